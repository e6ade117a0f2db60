"""What an agent embeds to be backed up hot: the control server, the ledger of external
actions (and `effects`: an action run once by its idempotency key, reconciled on start),
the wire format and the journal writer. Two optional modules make a framework's agent
backup-ready: `langgraph` (a compiled LangGraph graph whose runs are turns, cut at
super-steps) and `vectorindex` (a sqlite-vec index of memories); only they import
LangGraph and sqlite-vec, and nothing here imports them.

Importable without the store: imports only cleancut.errors, cleancut.jsonparse,
cleancut.clock and the journal format
(cleancut.journal: frame, scan, replay).
"""
