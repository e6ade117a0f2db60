"""Operations: tick and daemon, health and metrics, restore tests, and the recorded
run of one backup.
"""
