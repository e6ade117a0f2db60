"""Copy: snapshots to another repository, re-encrypted under its keys.
"""
