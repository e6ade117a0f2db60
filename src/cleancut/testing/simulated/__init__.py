"""A simulated agent modelled on an OpenClaw-style state directory.

Used by the tests, the benchmarks and the demo.
"""
