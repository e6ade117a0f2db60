"""A hot backup's capture against a workspace that fights back.

Like the backup walk (tests/test_source_hostile.py), the stager must never block
on a FIFO, never read a device, and never leave the source through a symlink,
whether an entry is swapped between its directory's listing and its open (the
stager's `before_open` seam runs at exactly that point) or a parent directory is
swapped while its children are copied. SQLite opens a database by name: it must
get the database in the directory the capture opened, and a -wal that is a FIFO
must not hang it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from hostile import swapper

from cleancut.hot.stage import Stager

SECRET = b"root-only secret from outside the source\n"
GUARD_S = 120  # a hang guard for the child process, not a timing assertion


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    return outside


def _staged_bytes(tree: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def _names(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))


def test_files_swapped_for_a_fifo_a_device_or_a_symlink_are_skipped_with_a_warning(
    tmp_path: Path,
):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a-pipe", "b-zero", "c-link", "d-kept"):
        (src / name).write_text(f"{name}\n")
    outside = _outside(tmp_path)

    swap = swapper(src, outside)

    stager = Stager(src, tmp_path / "staging")
    stager.before_open = swap
    stats = stager.capture()
    assert sorted(stats.warnings) == [
        "a-pipe: became a fifo after it was listed, skipped",
        "b-zero: became a character device after it was listed, skipped",
        "c-link: became a symlink after it was listed, skipped",
    ]
    assert _names(stager.tree) == ["d-kept"]
    assert sorted(stager.changed_since_capture()) == ["a-pipe", "b-zero", "c-link"]
    # The next pass, with nothing swapping, stages what is there now: the symlink as a link.
    stager.before_open = None
    again = stager.capture()
    assert again.warnings == []
    assert _names(stager.tree) == ["c-link", "d-kept"]
    assert SECRET not in _staged_bytes(stager.tree)


def test_a_directory_swapped_for_a_symlink_after_listing_is_not_followed(tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "mine.txt").write_text("mine\n")
    outside = _outside(tmp_path)

    def swap(rel: str) -> None:
        if rel == "sub":  # listed and stat'ed as a directory; now it points out
            (src / "sub").rename(tmp_path / "moved-sub")
            (src / "sub").symlink_to(outside)

    stager = Stager(src, tmp_path / "staging")
    stager.before_open = swap
    stats = stager.capture()
    assert stats.warnings == ["sub: became a symlink after it was listed, skipped"]
    assert SECRET not in _staged_bytes(stager.tree)
    assert "sub/secret.txt" not in _names(stager.tree)


def test_a_parent_swapped_for_a_symlink_does_not_redirect_its_children(tmp_path: Path):
    """Once a directory is open, its children are opened through it, not by path."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "secret.txt").write_text("the source's own file\n")
    outside = _outside(tmp_path)

    swapped = []

    def swap(rel: str) -> None:
        if rel == "sub/secret.txt":  # "sub" is open; by path, this name now leads outside
            (src / "sub").rename(tmp_path / "moved")
            (src / "sub").symlink_to(outside)
            swapped.append(rel)

    stager = Stager(src, tmp_path / "staging")
    stager.before_open = swap
    stats = stager.capture()
    assert swapped == ["sub/secret.txt"]
    assert stats.warnings == []
    assert (stager.tree / "sub" / "secret.txt").read_text() == "the source's own file\n"
    assert SECRET not in _staged_bytes(stager.tree)


def _wal_database(path: Path, rows: list[str]) -> sqlite3.Connection:
    """A WAL database whose rows live only in its -wal (the connection is kept open)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(r,) for r in rows])
    return con


def _rows(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r for (r,) in con.execute("SELECT x FROM t ORDER BY x")]
    finally:
        con.close()


def test_sqlite_reads_the_database_in_the_directory_the_capture_opened(tmp_path: Path):
    """SQLite opens by name: a parent swapped for a symlink must not hand it another database."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    ours = _wal_database(src / "sub" / "db.sqlite", ["ours-1", "ours-2"])
    theirs = _wal_database(outside / "db.sqlite", ["outside"])

    swapped = []

    def swap(rel: str) -> None:
        if rel == "sub/db.sqlite":
            (src / "sub").rename(tmp_path / "moved")
            (src / "sub").symlink_to(outside)
            swapped.append(rel)

    try:
        stager = Stager(src, tmp_path / "staging")
        stager.before_open = swap
        stats = stager.capture()
    finally:
        ours.close()
        theirs.close()
    assert swapped == ["sub/db.sqlite"]
    assert stats.warnings == [] and stats.sqlite_copied == 1
    assert _rows(stager.tree / "sub" / "db.sqlite") == ["ours-1", "ours-2"]


PROBE = """
import sys
from cleancut.hot.stage import Stager
stats = Stager(sys.argv[1], sys.argv[2]).capture()
print(stats.sqlite_copied, stats.files_copied)
for line in stats.warnings:
    print(line)
"""


def test_a_fifo_beside_a_database_does_not_hang_sqlite(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    con = _wal_database(src / "db.sqlite", ["row"])
    con.close()  # checkpoints: the rows are in the main file, the header still says WAL
    for sidecar in ("db.sqlite-wal", "db.sqlite-shm"):
        (src / sidecar).unlink(missing_ok=True)
    os.mkfifo(src / "db.sqlite-wal")  # SQLite opens the -wal by name, blocking
    (src / "plain.txt").write_text("kept\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(src), str(tmp_path / "staging")],
        capture_output=True, text=True, timeout=GUARD_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 1"
    assert lines[1:] == [
        "db.sqlite: db.sqlite-wal is a fifo, which SQLite would open by name "
        "(block on or follow); database not staged"
    ]
    assert _names(tmp_path / "staging" / "tree") == ["plain.txt"]


def test_the_manifest_is_never_written_through_a_planted_link(tmp_path: Path):
    """The staging manifest goes through a random, exclusive temporary name: a symlink
    planted at the name it used to be written under (`manifest.json.tmp`) is not
    followed, so what it points at is not truncated."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "note.md").write_text("note\n")
    outside = _outside(tmp_path)
    stager = Stager(src, tmp_path / "staging")
    stager.prepare()
    staging = tmp_path / "staging"
    (staging / "manifest.json.tmp").symlink_to(outside / "secret.txt")
    (src / "note.md").write_text("note, changed\n")
    stager.capture()
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert (staging / "manifest.json").is_file()
