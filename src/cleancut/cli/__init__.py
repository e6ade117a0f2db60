"""The command line: click commands that parse, call an engine, print its outcome.

One module per command in commands/; main.py is the entry point and the one place
that turns an outcome or a CleancutError into the exit code. The command line is
above the store: nothing in the store imports it.
"""

__version__ = "0.1.0"
