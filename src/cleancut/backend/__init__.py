"""Storage backends: the interface a repository needs, opening one from a location,
local directories, S3-compatible stores, and the wrappers (retry, throttle, append-only).

Knows bytes and names only, never the repository format.
"""
