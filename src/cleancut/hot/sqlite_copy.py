"""Copying a live SQLite database through SQLite's own online backup API.

A byte copy of a database that another process writes can tear: pages from two
transactions, or a main file without the commits that still live only in its
-wal. The backup API reads one consistent snapshot under SQLite's own locks,
WAL included, so the copy holds every transaction committed before it began.

A WAL-mode database can be *pinned* instead of copied: `pin()` opens a read
transaction, which fixes the state the connection sees (its WAL read mark) at
that moment, and `Pin.copy_to()` later runs the backup through that same
connection. Writers go on committing meanwhile (WAL readers never block them,
and a checkpoint never moves the database past a live reader's mark), and the
copy holds exactly the pinned state. A hot backup pins inside the pause (about
a millisecond, whatever the database's size) and copies after resume. A
rollback-journal database cannot be pinned that way: its read transaction holds
a SHARED lock that stops every writer from committing until the copy ends, so
it is cloned inside the pause where the filesystem has reflinks
(sqlite_clone.py), else copied inside the pause (docs/decisions/0017).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Callable
from urllib.parse import quote

from cleancut import sqlitecheck
from cleancut.errors import CleancutError

# The first 16 bytes of every SQLite 3 database file.
HEADER = b"SQLite format 3\x00"
# Header bytes 18 and 19 (file format write and read versions) are 2 in WAL mode.
WAL_VERSIONS = b"\x02\x02"
# Files SQLite keeps beside a database. They belong to the live database only:
# the staged copy is made self-contained, so none of them is ever staged.
SIDECARS = ("-wal", "-shm", "-journal")
ATTEMPTS = 5
BACKOFF_S = 0.02
# Lock contention that goes away by itself: worth a bounded retry.
_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL}
# Steps the backup may spend waiting on a lock before the attempt counts as busy.
_BUSY_STEPS = 20


class NotADatabase(Exception):
    """The file starts like a database but SQLite cannot read it (corrupt or truncated)."""


class _Busy(sqlite3.OperationalError):
    """The backup kept finding the database locked."""


def _uri(path: str, params: str) -> str:
    # quote(): a name holding "?", "#" or "%" must not be read as part of the URI.
    return f"file:{quote(path)}?{params}"


def _primary_code(exc: sqlite3.Error) -> int | None:
    if isinstance(exc, _Busy):
        return sqlite3.SQLITE_BUSY
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def remove_copy(path: str) -> None:
    """Remove a half-made copy and whatever journal SQLite left beside it."""
    for name in (path, *(path + s for s in SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def copy_database(src: str, dst: str, label: str, timeout: float = 5.0) -> None:
    """Write a consistent, self-contained copy of the database `src` to the new file `dst`.

    Busy or locked databases are retried a bounded number of times (this may run
    while an agent is paused, so it must not wait forever). Raises CleancutError
    when the database stays unreadable, NotADatabase when SQLite cannot read the
    file at all, and OSError(ENOSPC) when the copy does not fit.
    """
    for attempt in range(ATTEMPTS):
        try:
            _copy_once(src, dst, timeout)
            return
        except sqlite3.OperationalError as exc:
            remove_copy(dst)
            code = _primary_code(exc)
            if code == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
            if code in _TRANSIENT and attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_S * 2**attempt)
                continue
            raise CleancutError(f"cannot copy SQLite database {label}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            remove_copy(dst)
            raise NotADatabase(str(exc)) from exc
        except BaseException:
            remove_copy(dst)
            raise


def _copy_once(src: str, dst: str, timeout: float) -> None:
    source = open_read_transaction(src, timeout)
    try:
        _backup(source, dst)
    finally:
        source.close()


def open_read_transaction(src: str, timeout: float) -> sqlite3.Connection:
    """A read-only connection inside a read transaction: the backup reuses it, so it reads
    a single snapshot (every commit so far, the -wal's included) and never has to wait for
    a writer half way through."""
    source = sqlite3.connect(_uri(src, "mode=ro"), uri=True, timeout=timeout, isolation_level=None)
    try:
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        source.close()
        raise
    return source


def _backup(source: sqlite3.Connection, dst: str) -> None:
    target = sqlite3.connect(dst, isolation_level=None)
    try:
        source.backup(target, pages=-1, progress=_busy_guard(), sleep=0.01)
        # The backup copies the source's header, which says WAL for a WAL database.
        # Switch the *copy* to DELETE mode so the staged database is one
        # self-contained file: opening it never needs, or creates, a -wal or -shm.
        target.execute("PRAGMA journal_mode=DELETE").fetchone()
    finally:
        target.close()


class Pin:
    """A read transaction held open on a WAL database: its state when pin() returned."""

    def __init__(self, connection: sqlite3.Connection, label: str) -> None:
        self._connection: sqlite3.Connection | None = connection
        self.label = label

    def copy_to(self, dst: str) -> None:
        """Write the pinned state to the new file `dst`, then let go of the pin. Raises
        CleancutError (OSError(ENOSPC) when it does not fit); no retry: the pinned
        state cannot be taken again."""
        connection = self._connection
        if connection is None:
            raise CleancutError(f"SQLite database {self.label}: its pin was already released")
        self._connection = None
        try:
            _backup(connection, dst)
        except sqlite3.Error as exc:
            remove_copy(dst)
            if _primary_code(exc) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from exc
            raise CleancutError(f"cannot copy pinned SQLite database {self.label}: {exc}") from exc
        except BaseException:
            remove_copy(dst)
            raise
        finally:
            connection.close()

    def release(self) -> None:
        """Let go without copying (idempotent)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def pin(src: str, label: str, timeout: float = 5.0) -> Pin | None:
    """Open a read transaction on the database `src` and keep it: a Pin of its state now.
    None when the database is not in WAL mode (a rollback-journal reader would block
    every writer until the copy ends: the caller copies it instead). Retries a busy
    database like copy_database; raises CleancutError when it stays unreadable and
    NotADatabase when SQLite cannot read it."""
    for attempt in range(ATTEMPTS):
        try:
            connection = open_read_transaction(src, timeout)
        except sqlite3.OperationalError as exc:
            if _primary_code(exc) in _TRANSIENT and attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_S * 2**attempt)
                continue
            raise CleancutError(f"cannot read SQLite database {label}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise NotADatabase(str(exc)) from exc
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        except sqlite3.Error as exc:
            connection.close()
            raise CleancutError(f"cannot read SQLite database {label}: {exc}") from exc
        if str(mode).lower() != "wal":
            connection.close()
            return None
        return Pin(connection, label)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _busy_guard() -> Callable[[int, int, int], None]:
    """A progress callback that ends a backup stuck on locks (Python retries them forever)."""
    busy = 0

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal busy
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            busy += 1
            if busy >= _BUSY_STEPS:
                raise _Busy("database is locked")
        else:
            busy = 0

    return progress


def integrity_problems(path: str) -> list[str]:
    """What `PRAGMA integrity_check` finds wrong with the staged copy at `path` (empty:
    fine), read-only so the check cannot change what is stored (sqlitecheck.py:
    CHECK constraints are left to the restore test)."""
    return sqlitecheck.integrity_problems(path, read_only=True)
