"""`PRAGMA integrity_check` run by a current SQLite, not the one Python was built with.

Agent runtimes ship new SQLite builds and use their functions in schemas: the
OpenClaw gateway's tables have CHECK constraints calling `octet_length()`
(SQLite 3.43), so Debian's 3.40, behind Python's sqlite3, fails every
integrity check of them with "unknown function". apsw bundles a current SQLite
(3.54 as pinned) and is what checks databases here.

CHECK constraints are verified only on a connection that may write: read-only,
SQLite skips them (an integrity check of a read-only handle reported "ok" on a
table holding a row that breaks its CHECK). A restore test checks its sandbox
read-write; the capture checks its staged copies read-only, so that the check
cannot change what is about to be stored, and leaves CHECK constraints to the
restore test.
"""

from __future__ import annotations

BUSY_TIMEOUT_MS = 5_000


def integrity_problems(path: str, *, read_only: bool) -> list[str]:
    """What `PRAGMA integrity_check` finds wrong with the database at `path` (empty: fine;
    a database that cannot be opened or read is one problem line)."""
    import apsw  # only a check of a database needs it, not every command that may run one

    flags = apsw.SQLITE_OPEN_READONLY if read_only else apsw.SQLITE_OPEN_READWRITE
    try:
        con = apsw.Connection(path, flags=flags)
    except apsw.Error as exc:
        return [f"cannot open as SQLite ({exc})"]
    try:
        con.set_busy_timeout(BUSY_TIMEOUT_MS)
        rows = [str(row[0]) for row in con.execute("PRAGMA integrity_check")]
    except apsw.Error as exc:
        return [f"integrity_check failed ({exc})"]
    finally:
        con.close()
    return [] if rows == ["ok"] else rows
