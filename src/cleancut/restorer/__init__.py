"""Restore: write a snapshot's tree into a target directory and nowhere else, and hand
over the external actions it holds in flight.
"""
