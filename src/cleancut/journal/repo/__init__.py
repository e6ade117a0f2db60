"""Journal batches in the repository: packing, shipping, fetching, verifying,
compacting, and restoring a journaling source to a point.

Where the journal format (journal/) meets the repository, through Repository's
methods (object names, reads and writes under journal/, its local directory). Must not
import prune, checker, ops, replication, settings, hot, sdk, cli or testing.
"""
