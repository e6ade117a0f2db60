"""Cloning a rollback-journal SQLite database with a reflink: O(metadata), not O(size).

A WAL database is pinned in the pause and copied after it (sqlite_copy.pin). A database
in rollback-journal mode cannot be: its read transaction is a SHARED lock, which stops
every writer from committing for as long as it is held, so copying it through the backup
API inside the pause costs time in proportion to its size (decision 0017).

On a filesystem with reflinks (btrfs; XFS made with reflink=1) the copy is instead one
FICLONE of the database file, taken while a read transaction holds the SHARED lock:

- under SHARED no connection can hold the EXCLUSIVE lock a rollback-journal writer
  needs to change the database file, so the file's bytes are one committed state, and
  a -journal beside it, if any, is a writer's undo log for changes not yet in the
  file (a *hot* journal, left by a crash, is rolled back by SQLite before SHARED is
  granted, or the read fails and the caller copies the old way);
- the clone shares the file's extents and copies none: its cost is the file's extent
  count, not its size; the lock is held for that long only;
- the clone is a whole rollback-journal database on its own (no -wal holds part of it),
  read after resume by the stage's integrity check and by the store.

Where FICLONE is not supported (ext4, XFS without reflink, a staging directory on
another filesystem) nothing is cloned and the caller copies through the backup API.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3

from cleancut.errors import CleancutError

from .sqlite_copy import NotADatabase, open_read_transaction
from .stage_copy import Copier


def clone_database(
    src: str, src_fd: int, dst: str, dev: int, copier: Copier, label: str, timeout: float
) -> bool:
    """Reflink the rollback-journal database `src` (open as `src_fd`, on device `dev`) to
    the new file `dst` under a read transaction. False, with nothing written, when the
    database is in WAL mode or the filesystem cannot clone (the caller copies it instead).
    Raises NotADatabase when SQLite cannot read it, CleancutError when it stays locked."""
    if not copier.may_clone(dev):
        return False
    try:
        connection = open_read_transaction(src, timeout)
    except sqlite3.OperationalError as exc:
        raise CleancutError(f"cannot read SQLite database {label}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise NotADatabase(str(exc)) from exc
    try:
        mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode == "wal":
            return False  # part of its state is in the -wal: pinned or copied instead
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            cloned = copier.clone(src_fd, out, dev)
        finally:
            os.close(out)
        if not cloned:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dst)
        return cloned
    except sqlite3.Error as exc:
        raise CleancutError(f"cannot read SQLite database {label}: {exc}") from exc
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        if exc.errno == errno.ENOSPC:
            raise
        raise CleancutError(f"cannot clone SQLite database {label}: {exc.strerror}") from exc
    finally:
        connection.close()
