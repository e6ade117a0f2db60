"""Backup: walk a source, chunk, deduplicate, pack and commit one snapshot."""
