"""The repository format: config, keys, encryption, packs, index, objects, trees,
snapshots, records, chains, the repository lock (`locks`), the prune reserve, and
the local cache that makes them fast.

The one place that knows what lies on a backend (docs/repository-format.md).
`Repository` offers the engines what they need (object names, packs, segments,
snapshots, damage records, the lock, its local directory), so no engine reaches into
its backend or cache. Imports only backend, fsio and the top-level modules: never
archiver, restorer, checker, prune, journal, ops, replication, settings, hot, sdk,
cli or testing.
"""
