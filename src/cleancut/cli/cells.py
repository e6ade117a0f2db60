"""Table cells for names that come from snapshots and config: shown, never interpreted.

A snapshot's name, host and tags are whatever a backup (or a forged record)
put there. Given to rich as a plain string, "[red]" is read as markup and a
newline breaks the row; a Text cell of the escaped name is shown as it is.
"""

from __future__ import annotations

from rich.text import Text

from cleancut.pathtext import shown_path


def cell(value: str) -> Text:
    """A table cell that shows `value` literally, on one line, escaped as paths are."""
    return Text(shown_path(value))
