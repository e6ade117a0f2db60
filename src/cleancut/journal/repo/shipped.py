"""`<journal dir>/shipped`: how far the repository holds an agent's journal.

Ship writes it after every run; the agent reads it to know which records it
may trim (`Journal.trim(shipped_seq)`, which keeps the last 5 minutes anyway).
It holds one decimal sequence number and a newline. It is written atomically
(a temporary file, fsync, rename, fsync of the directory), so a reader sees the
old number or the new one, never a torn one. A number of 0 means none of this
journal's records is known to be in the repository (a journal that does not
continue the shipped one): nothing may be trimmed.
"""

from __future__ import annotations

from pathlib import Path

from cleancut.fsio.safeio import replace_file
from cleancut.journal.frame import JournalError, read_regular

SHIPPED_FILE = "shipped"
SHIPPED_MAX = 64  # one sequence number (at most 20 digits) and a newline; more is not ours


def write_shipped(journal_dir: Path, seq: int) -> None:
    # The journal directory is the agent's: a temporary name it could guess (the process
    # id) could hold its symlink, and ship may run as root. safeio's name is random and
    # created exclusively.
    replace_file(journal_dir / SHIPPED_FILE, b"%d\n" % seq, 0o600)


def read_shipped(journal_dir: str | Path) -> int | None:
    """What `<dir>/shipped` says (None when ship has not written it)."""
    path = Path(journal_dir) / SHIPPED_FILE
    try:
        raw = read_regular(path, "shipped file", SHIPPED_MAX)
    except FileNotFoundError:
        return None
    text = raw.decode("ascii", "replace").strip()
    try:
        if len(raw) >= SHIPPED_MAX:
            raise ValueError
        return int(text)
    except ValueError:
        raise JournalError(f"{path} is not a number: {text!r:.40}") from None
