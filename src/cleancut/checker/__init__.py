"""Check and repair: is every snapshot restorable, and healing what `check` found damaged.
"""
