"""Rollback-journal SQLite databases in the pause: a reflink clone where the filesystem
has one, the backup API copy elsewhere (decision 0017, issue 13).

Each test makes its own filesystem (a sparse image, mkfs, a loop mount; root and the
tools scripts/test-tools installs): XFS with reflink=1 and btrfs clone the database
file under its read lock, copying no bytes; ext4 cannot, so the database is copied
through SQLite's backup API inside the pause, as before. Either way the staged copy
holds exactly the committed state: a writer's transaction open at the cut (its pages
in the -journal and in its cache) is not in it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopfs import loop_mounted

from cleancut.errors import CleancutError
from cleancut.hot.stage import Stager

ROWS = 400
BLOB = 4096  # about 1.7 MB of rows: many pages, a few extents


@pytest.fixture(params=["xfs", "btrfs", "ext4"])
def fs(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    kind = request.param
    with loop_mounted(kind) as mnt:
        yield kind, mnt


def _make_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t (data) VALUES (randomblob(?))", [(BLOB,)] * ROWS)
    con.execute("COMMIT")
    con.close()


def _rows(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        con.close()


def test_a_rollback_journal_database_is_cloned_where_reflinks_exist(
    fs: tuple[str, Path],
) -> None:
    kind, mnt = fs
    src, staging = mnt / "agent", mnt / "staging"
    db = src / "memory.sqlite"
    _make_db(db)
    stager = Stager(src, staging)

    # The agent's next transaction is under way at the cut: RESERVED lock held, its
    # pages changed in its cache and the originals in the -journal, not yet committed.
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM t WHERE id % 2 = 0")
    writer.execute("INSERT INTO t (data) VALUES (randomblob(10))")
    try:
        stats = stager.capture(defer=True)  # what the pause runs
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    stager.finish()

    strategy = stats.strategy()
    if kind in ("xfs", "btrfs"):
        assert (stats.sqlite_cloned, stats.sqlite_copied) == (1, 0)
        assert strategy["databases_cloned"] == 1
        assert strategy["databases_copied_in_pause"] == 0
        assert stats.bytes_copied == 0  # shared extents: nothing copied in the pause
    else:  # ext4: no reflinks, so the backup API copies it in the pause, as before
        assert (stats.sqlite_cloned, stats.sqlite_copied) == (0, 1)
        assert strategy["databases_copied_in_pause"] == 1
        assert stats.bytes_copied >= ROWS * BLOB
    assert stager.verify() == []  # integrity_check of the staged copy, after resume
    staged = staging / "tree" / "memory.sqlite"
    assert _rows(staged) == ROWS  # the committed state, without the open transaction
    assert not (staging / "tree" / "memory.sqlite-journal").exists()

    # A committed change is cloned (or copied) again by the next capture.
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("DELETE FROM t WHERE id <= 100")
    con.close()
    again = stager.capture(defer=True)
    stager.finish()
    assert again.sqlite_cloned + again.sqlite_copied == 1
    assert _rows(staged) == ROWS - 100


def test_a_locked_database_is_left_for_the_copy_path(tmp_path: Path) -> None:
    """A database a writer holds EXCLUSIVE (mid-commit) cannot be read: the clone gives
    way, and the backup API copy's bounded retries decide, as before the clone existed
    (the capture fails with one line; nothing is staged under the database's name)."""
    src, staging = tmp_path / "agent", tmp_path / "staging"
    db = src / "memory.sqlite"
    _make_db(db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        stager = Stager(src, staging, sqlite_timeout=0.05)
        with pytest.raises(CleancutError, match="memory.sqlite: database is locked"):
            stager.capture(defer=True)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert not (staging / "tree" / "memory.sqlite").exists()
