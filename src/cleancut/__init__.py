"""cleancut: hot backup of running AI agents into an encrypted, deduplicating snapshot store.

The map of packages and the rules between them: docs/architecture.md.
"""
