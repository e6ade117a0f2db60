"""Journal batches in the repository: packing, shipping, fetching, verifying,
compacting, and restoring a journaling source to a point.
"""
