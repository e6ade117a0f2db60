"""Operations: tick and daemon, health and metrics, restore tests, scheduled forget and
prune (`maintenance`), and the recorded run of one backup.

Uses the engines through their functions and the repository through Repository's
methods. Must not import hot, sdk, cli or testing.
"""
