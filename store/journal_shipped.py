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

import os
from pathlib import Path

from .journal import JournalError, read_regular

SHIPPED_FILE = "shipped"
SHIPPED_MAX = 64  # one sequence number (at most 20 digits) and a newline; more is not ours


def write_shipped(journal_dir: Path, seq: int) -> None:
    path = journal_dir / SHIPPED_FILE
    tmp = journal_dir / f".{SHIPPED_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, b"%d\n" % seq)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(journal_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
