"""What an agent embeds to be backed up hot: the control server, the ledger of external
actions, the wire format and the journal writer.

Importable without the store: imports only cleancut.errors, cleancut.jsonparse,
cleancut.clock and the journal format
(cleancut.journal: frame, scan, replay).
"""
