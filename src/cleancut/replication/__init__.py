"""Copy: snapshots to another repository, re-encrypted under its keys (`copy`), its
replica opened under the bandwidth-cap policy of settings/caps.py.

Must not import checker, prune, ops, hot, sdk, cli or testing.
"""
