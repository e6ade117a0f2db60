"""Browsing snapshots without restoring them: getting one file back.

Owns the read-only FUSE filesystem of `mount` (its catalog of sources and snapshot
times, snapshot states replayed on demand, file reads that fetch only the blobs they
need through a bounded cache), `dump` (one file, or a directory as a tar stream) and
`find` (glob patterns over every snapshot's paths). It reads through repository/
(chains, trees, blobs) and must not import archiver, restorer, checker, prune,
journal.repo, ops, replication or settings: browsing never writes to a repository
or a target directory.
"""
