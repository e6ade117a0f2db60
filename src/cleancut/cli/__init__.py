"""The command line: click commands that parse, call an engine, and print its outcome."""

__version__ = "0.1.0"
