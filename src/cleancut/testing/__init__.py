"""Test and demo equipment: the simulated agent and the demo's sample workspace.

Not part of the product: nothing outside testing/ and cli/demo.py imports it.
"""
