"""Capture-time validation: which files are checked how, the JSON, JSONL and SQLite checks,
and the results a snapshot carries so a restore test judges each file against its capture.
"""
