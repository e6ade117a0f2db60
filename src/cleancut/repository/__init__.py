"""The repository format: config, keys, encryption, packs, index, objects, trees,
snapshots, records, and the local cache that makes them fast.

The one place that knows what lies on a backend (docs/repository-format.md).
Must not import archiver, restorer, checker, prune, journal.repo, ops, settings, hot,
sdk or cli.
"""
