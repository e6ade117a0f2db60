"""Settings: the config file, backup profiles and the effective values of a source.
"""
