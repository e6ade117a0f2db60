"""The agent journal's format: `frame` (operations, records, framing, segment files),
`scan` (verified reading, damage reported as data, a writer's tail) and `replay`
(applying records to a directory, each whole or not at all). `log` only re-exports
names for the SDK's journal writer until it imports the modules above.

Pure format: imports only the top-level modules and fsio, never the repository, an
engine, settings or anything above the store (the SDK's journal writer embeds it in an
agent). Its batches in a repository live in `journal.repo`.
"""
