"""Retention and prune: which snapshots are kept (`retention`, forget), the prune-mark
record (`mark`), what the snapshots that exist need (`view`) and giving back the space
of packs that no snapshot needs without racing a backup (`prune`).

The lock a prune holds is the repository's (repository/locks.py). Reads and changes
the repository only through Repository's methods. Must not import archiver, restorer,
checker, ops, replication, hot, sdk, cli or testing.
"""
