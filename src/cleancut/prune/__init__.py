"""Retention and prune: which snapshots are kept, and giving back the space of packs
that no snapshot needs, without racing a backup.
"""
