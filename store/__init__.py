"""The snapshot store: content-addressed, encrypted, deduplicating. Knows nothing of agents."""
