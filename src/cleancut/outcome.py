"""What an engine hands back to the command that ran it: a JSON document and an exit code.

A command parses its options, calls one engine, prints the outcome and returns it;
`cli/main.py` turns the returned outcome into the process's exit code, in the one place
that also maps a CleancutError to its code. An engine whose run finished but not wholly
well (a snapshot written with warnings, files not restored, a journal replay that
stopped) says so with its outcome's exit code instead of raising, so that what it did
is still printed.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Outcome(Protocol):
    """An engine's result as a command reports it: `to_json()` is what --json prints."""

    @property
    def exit_code(self) -> int:
        """0 when all went well, else one of errors.ExitCode."""
        ...

    def to_json(self) -> Any:
        """The JSON document of --json (the keys the command reference documents)."""
        ...
