"""The agent journal's format: framing, scanning and replaying records.

Pure format: must not import the repository (the SDK's journal writer uses it).
"""
