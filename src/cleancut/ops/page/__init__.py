"""The status page `cleancut daemon` serves on loopback: one read-only HTML page per
repository, rendered on the server from what `status --json` reports (ops/status.py)
and the history of the same records (ops/history.py), with inline SVG charts.

Part of ops: same import rules (must not import hot, sdk, cli or testing).
"""
