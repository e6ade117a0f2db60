"""The command line: click commands that parse, call cleancut.store, and print."""

__version__ = "0.1.0"
