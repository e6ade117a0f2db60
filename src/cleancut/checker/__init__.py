"""Check and repair: is every snapshot restorable (`check`), and healing what `check`
found damaged (`heal`).

Reads and changes the repository only through Repository's methods. Must not import
prune, ops, replication, settings, hot, sdk, cli or testing.
"""
