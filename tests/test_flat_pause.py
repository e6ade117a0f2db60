"""A flat pause: what the in-pause pass no longer does (issue 13, the capture half).

A WAL database is pinned inside the pause and copied after it, grown files get
their new tail only, and the manifest waits until after resume. Real files, real
other processes writing SQLite (with apsw's current SQLite, as an agent would).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, tree_state
from test_hot_backup import hot, restore, start_agent, stop_agent, violations

from cleancut.hot.stage import Stager

SETTLE_S = 0.06  # longer than the stager's racy window

# Run in another process: SQLite's WAL read marks are POSIX locks, which one process
# never sees conflict with its own (the agent is always another process).
WRITER = r"""
import apsw, sys
db, action = sys.argv[1], sys.argv[2]
con = apsw.Connection(db)
con.set_busy_timeout(2000)
if action == "init":
    con.execute("PRAGMA journal_mode=" + sys.argv[3])
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    with con:
        for i in range(2000):
            con.execute("INSERT INTO t(v) VALUES (?)", ("row %d " % i * 20,))
elif action == "update":
    with con:
        con.execute("UPDATE t SET v = 'u' || v")
elif action == "more":
    for _ in range(3):
        with con:
            con.execute("UPDATE t SET v = 'later' || v")
            con.execute("INSERT INTO t(v) VALUES ('later')")
        print(list(con.execute("PRAGMA wal_checkpoint(PASSIVE)")), flush=True)
"""


def _sql(db: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(db), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def _digest(db: Path) -> tuple[int, str]:
    """Rows and a hash of every row, read by another process's view of the file."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        con.close()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def _files(root: Path) -> dict[str, object]:
    """tree_state without the database and its sidecars (compared through SQLite)."""
    return {k: v for k, v in tree_state(root).items() if not k.startswith("state.db")}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"


# --- 1. WAL databases are pinned in the pause and copied after it -----------------------


def test_a_pinned_wal_database_is_copied_as_it_was_at_the_pin(src: Path, staging: Path) -> None:
    db = src / "state.db"
    _sql(db, "init", "wal")
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        _sql(db, "update")  # changed since prepare: the capture must take it
        at_cut = _digest(db)
        stats = stager.capture(defer=True)
        assert (stats.sqlite_pinned, stats.sqlite_copied) == (1, 0)
        # The agent runs on: it commits, and checkpoints into the main file.
        checkpoints = _sql(db, "more")
        assert _digest(db) != at_cut and _digest(db)[0] == at_cut[0] + 3
        stager.finish()
    # The passive checkpoints could not move the main file past the pinned reader.
    assert checkpoints.count("[(0,") == 3
    assert (stats.sqlite_pinned, stats.sqlite_copied) == (1, 1)
    staged = stager.tree / "state.db"
    assert stats.bytes_after_resume == staged.stat().st_size > 0
    assert _digest(staged) == at_cut
    assert staged.read_bytes()[18:20] == b"\x01\x01"  # self-contained (DELETE mode)
    assert stager.verify() == []


def test_a_rollback_journal_database_is_copied_inside_the_pause(src: Path, staging: Path
                                                                ) -> None:
    db = src / "state.db"
    _sql(db, "init", "delete")
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        _sql(db, "update")
        at_cut = _digest(db)
        stats = stager.capture(defer=True)
        # Pinning it would block the agent's commits until the copy ends: copied now.
        assert (stats.sqlite_pinned, stats.sqlite_copied) == (0, 1)
        assert _digest(stager.tree / "state.db") == at_cut
        stager.finish()
    assert _digest(stager.tree / "state.db") == at_cut


def test_the_manifest_waits_for_finish(src: Path, staging: Path) -> None:
    (src / "a.txt").write_text("one")
    stager = Stager(src, staging)
    manifest = staging / "manifest.json"
    with stager.lock():
        stager.prepare()
        before = manifest.read_bytes()
        (src / "a.txt").write_text("two")
        stager.capture(defer=True)
        assert manifest.read_bytes() == before  # not written (nor fsynced) in the pause
        stager.finish()
        assert manifest.read_bytes() != before
    assert (stager.tree / "a.txt").read_text() == "two"


DEFERRED_THEN_DIE = r"""
import os, sys
from cleancut.hot.stage import Stager
stager = Stager(sys.argv[1], sys.argv[2])
with stager.lock():
    stager.capture(defer=True)
    os._exit(0)  # killed between the pause and finish(): no pinned copy, no manifest
"""


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_cleancut_killed_between_capture_and_finish_leaves_staging_consistent(
    src: Path, staging: Path, journal_mode: str
) -> None:
    db = src / "state.db"
    _sql(db, "init", journal_mode)
    (src / "notes.md").write_text("first\n")
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
    _sql(db, "update")
    (src / "notes.md").write_text("second, longer\n")
    (src / "new.md").write_text("new\n")
    subprocess.run([sys.executable, "-c", DEFERRED_THEN_DIE, str(src), str(staging)], check=True)
    # A new cleancut trusts nothing the dead one did not finish: what it stages is the source.
    stager = Stager(src, staging)
    with stager.lock():
        stager.capture(defer=True)
        stager.finish()
    assert _digest(stager.tree / "state.db") == _digest(db)
    assert _files(stager.tree) == _files(src)


def test_a_pin_left_unfinished_is_released_and_the_database_copied_again(
    src: Path, staging: Path
) -> None:
    db = src / "state.db"
    _sql(db, "init", "wal")
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        _sql(db, "update")
        stager.capture(defer=True)  # then the capture fails: no finish()
    _sql(db, "more")  # a released pin lets the agent checkpoint fully
    with stager.lock():
        stats = stager.capture()
    assert stats.sqlite_copied == 1
    assert _digest(stager.tree / "state.db") == _digest(db)


# --- 2. files that only grew get their tail -------------------------------------------


def _grow(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_a_grown_file_gets_only_its_new_tail(src: Path, staging: Path) -> None:
    log = src / "transcript.jsonl"
    log.write_bytes(b'{"turn": 0}\n' * 20_000)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        inode = (stager.tree / log.name).stat().st_ino
        time.sleep(SETTLE_S)
        _grow(log, b'{"turn": 1}\n' * 10)
        stats = stager.capture()
    assert (stats.tails, stats.files_copied, stats.bytes_copied) == (1, 1, 120)
    staged = stager.tree / log.name
    assert staged.read_bytes() == log.read_bytes()
    assert staged.stat().st_ino == inode
    assert staged.stat().st_mtime_ns == log.stat().st_mtime_ns


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_grown_file_whose_staged_prefix_changed_is_copied_whole(
    src: Path, staging: Path, where: str
) -> None:
    log = src / "ledger.jsonl"
    log.write_bytes(b"a" * 50_000)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        with open(log, "r+b") as f:
            f.seek(0 if where == "first" else 50_000 - 1)
            f.write(b"X")
            f.seek(0, os.SEEK_END)
            f.write(b"tail")
        stats = stager.capture()
    assert (stats.tails, stats.bytes_copied) == (0, 50_004)
    assert (stager.tree / log.name).read_bytes() == log.read_bytes()


def test_a_tail_half_appended_before_a_crash_is_cut_back(src: Path, staging: Path) -> None:
    log = src / "transcript.jsonl"
    log.write_bytes(b"x" * 30_000)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
    _grow(stager.tree / log.name, b"half a tail that the source never had")  # the crash
    _grow(log, b"the real tail\n")
    stager = Stager(src, staging)  # a new process: the manifest still names 30,000 bytes
    with stager.lock():
        stats = stager.capture()
    assert stats.tails == 1
    assert (stager.tree / log.name).read_bytes() == log.read_bytes()


# --- 4. change tracking: the in-pause pass visits only what changed -----------------------


def _workspace(src: Path, dirs: int = 30) -> None:
    for i in range(dirs):
        d = src / f"d{i:02}" / "sub"
        d.mkdir(parents=True)
        (d / "note.md").write_text(f"note {i}\n")
        (d.parent / "top.md").write_text(f"top {i}\n")
    time.sleep(SETTLE_S)  # past the racy window: what is not touched again is copied once


@contextlib.contextmanager
def _tracked(src: Path, staging: Path) -> Iterator[Stager]:
    """A stager holding its lock and tracking, after its first (full) pass."""
    stager = Stager(src, staging)
    with stager.lock():
        assert stager.track() is None
        first = stager.prepare()
        assert (first.scan, first.scan_reason) == ("full", "first pass since change tracking began")
        yield stager


def test_a_tracked_capture_visits_only_the_changed_directories(src: Path, staging: Path) -> None:
    _workspace(src)
    with _tracked(src, staging) as stager:
        idle = stager.capture()
        assert (idle.scan, idle.dirs_scanned, idle.files_scanned) == ("tracked", 0, 0)
        (src / "d07" / "sub" / "note.md").write_text("changed\n")
        (src / "d11" / "new.md").write_text("new\n")
        (src / "d03" / "top.md").unlink()
        stats = stager.capture()
        assert stats.scan == "tracked"
        assert stats.dirs_scanned == 3 and stats.files_copied == 2 and stats.files_deleted == 1
        assert stager.changed_since_capture() == []
        (src / "at-the-root.md").write_text("root\n")
        root = stager.capture()
        assert (root.scan, root.dirs_scanned, root.files_copied) == ("tracked", 1, 1)
    assert tree_state(stager.tree) == tree_state(src)


@pytest.mark.parametrize(
    "change",
    ["new subtree", "subtree replaced", "chmod dir", "remove subtree", "symlink", "moved in"],
)
def test_a_tracked_capture_stages_every_kind_of_change(
    src: Path, staging: Path, tmp_path: Path, change: str
) -> None:
    _workspace(src, dirs=4)
    outside = tmp_path / "outside"
    (outside / "deep" / "er").mkdir(parents=True)
    (outside / "deep" / "er" / "f.md").write_text("moved in\n")
    with _tracked(src, staging) as stager:
        if change == "new subtree":
            (src / "d01" / "a" / "b" / "c").mkdir(parents=True)
            (src / "d01" / "a" / "b" / "c" / "f.md").write_text("deep\n")
        elif change == "subtree replaced":
            shutil.rmtree(src / "d02")
            (src / "d02" / "sub").mkdir(parents=True)
            (src / "d02" / "sub" / "other.md").write_text("other\n")
        elif change == "chmod dir":
            (src / "d00" / "sub").chmod(0o700)
        elif change == "remove subtree":
            shutil.rmtree(src / "d03")
        elif change == "symlink":
            (src / "d01" / "sub" / "link").symlink_to("../top.md")
        else:
            os.rename(outside / "deep", src / "d00" / "deep")
        stats = stager.capture()
        assert stats.scan == "tracked", stats.scan_reason
        assert stager.changed_since_capture() == []
    assert tree_state(stager.tree) == tree_state(src)


def test_a_renamed_directory_falls_back_to_a_full_scan_and_says_so(src: Path, staging: Path
                                                                   ) -> None:
    _workspace(src, dirs=4)
    with _tracked(src, staging) as stager:
        os.rename(src / "d01", src / "renamed")
        stats = stager.capture()
        assert stats.scan == "full"
        assert "directory d01 was renamed" in stats.scan_reason
        # The watches were re-armed before that scan: the next pass may track again.
        (src / "renamed" / "sub" / "note.md").write_text("after the rename\n")
        again = stager.capture()
        assert (again.scan, again.files_copied) == ("tracked", 1)
    assert tree_state(stager.tree) == tree_state(src)


def test_an_overflowed_event_queue_falls_back_to_a_full_scan_and_says_so(
    src: Path, staging: Path
) -> None:
    _workspace(src, dirs=2)
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    with _tracked(src, staging) as stager:
        tracker = stager._tracker
        assert tracker is not None
        # Hold the tracker's lock, so its reader thread cannot drain the kernel's queue,
        # while more events than the queue holds are raised (two per new file).
        with tracker._lock:
            burst = src / "d00"  # watched already
            for i in range(limit // 2 + 100):
                os.close(os.open(burst / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644))
            (src / "d01" / "top.md").write_text("lost in the overflow\n")
        stats = stager.capture()
        assert stats.scan == "full"
        assert stats.scan_reason == "change tracking gave up: the inotify event queue overflowed"
    assert tree_state(stager.tree) == tree_state(src)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: (s / "d00" / "top.md").write_text("top 0\n"), "d00/top.md"),
        (lambda s: (s / "d01" / "sub" / "note.md").unlink(), "d01/sub/note.md"),
        (lambda s: (s / "d02" / "sub" / "new.md").write_text("new"), "d02/sub/new.md"),
        (lambda s: (s / "d03" / "sub" / "dir").mkdir(), "d03/sub/dir"),
        (lambda s: os.chmod(s / "d00" / "top.md", 0o600), "d00/top.md"),
    ],
)
def test_a_write_after_a_tracked_capture_is_named(
    src: Path, staging: Path, change: object, expected: str
) -> None:
    _workspace(src, dirs=4)
    with _tracked(src, staging) as stager:
        stager.capture()
        change(src)  # type: ignore[operator]
        assert expected in stager.changed_since_capture()
        # What that check took from the tracker is still scanned by the next pass.
        again = stager.capture()
        assert again.scan == "tracked" and again.dirs_scanned >= 1
    assert tree_state(stager.tree) == tree_state(src)


RESTARTED = r"""
import json, sys
from cleancut.hot.stage import Stager
stager = Stager(sys.argv[1], sys.argv[2])
with stager.lock():
    stager.track()
    stats = stager.capture()
print(json.dumps([stats.scan, stats.scan_reason]))
"""


def test_a_restarted_cleancut_scans_everything_first(src: Path, staging: Path) -> None:
    _workspace(src, dirs=4)
    with _tracked(src, staging) as stager:
        stager.capture()
    # No cleancut runs: nothing watches these changes.
    (src / "d00" / "sub" / "note.md").write_text("while nobody watched\n")
    shutil.rmtree(src / "d01")
    (src / "d02" / "x" / "y").mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-c", RESTARTED, str(src), str(staging)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out) == ["full", "first pass since change tracking began"]
    assert tree_state(staging / "tree") == tree_state(src)


def test_without_tracking_every_pass_is_full_and_says_so(src: Path, staging: Path) -> None:
    _workspace(src, dirs=2)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        stats = stager.capture()
    assert (stats.scan, stats.scan_reason) == ("full", "no change tracking")
    assert stats.dirs_scanned == 5


# --- the whole hot backup, under load ---------------------------------------------------


def test_hot_backups_under_load_track_and_defer_and_restore_consistent(
    repo_cli: CLI, tmp_path: Path
) -> None:
    agent = start_agent(tmp_path)
    try:
        summaries = []
        for _ in range(4):
            summary = hot(repo_cli, agent)
            assert summary["consistency"] == "quiesced"
            summaries.append(summary)
    finally:
        stop_agent(agent)
    for summary in summaries:
        capture = summary["capture"]
        # Each backup is a new process: tracking starts before its first pass (prepare),
        # which therefore scans everything; the in-pause pass visits only what changed
        # (unless the tracker gave up, which it must then say).
        assert capture["prepare"]["scan_reason"] == "first pass since change tracking began"
        strategy = capture["strategy"]
        assert (strategy["scan"], strategy["scan_why"][:9]) in {
            ("tracked", "inotify: "),
            ("full", "change tr"),
        }, strategy
        # The agent's SQLite index is in WAL mode: never copied inside the pause.
        assert strategy["databases_copied_in_pause"] == 0, strategy
        assert set(strategy) >= {"databases_pinned", "tails", "after_resume_s"}
    for i, summary in enumerate(summaries):
        target = tmp_path / f"restored-{i}"
        restore(repo_cli, str(summary["snapshot_id"]), target)
        found = violations(agent, target, summary)
        assert found == [], f"snapshot {i}: {found[:5]}"


AS_NOBODY = r"""
import json, os, sys
from cleancut.hot.stage import Stager  # imported first: the interpreter is root's
os.setgid(65534)
os.setuid(65534)
stager = Stager(sys.argv[1], sys.argv[2])
with stager.lock():
    reason = stager.track()
    first = stager.prepare()
    second = stager.capture()
print(json.dumps([reason, second.scan, second.scan_reason]))
"""


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory that another user can reach (pytest's is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="cleancut-nobody-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_a_directory_that_cannot_be_watched_means_full_scans_and_says_so(
    open_tmp: Path,
) -> None:
    # A real permission fault: cleancut runs as an unprivileged user (nobody) and one
    # directory of the source is closed to it.
    tmp_path = open_tmp
    src = tmp_path / "src"
    _workspace(src, dirs=2)
    (src / "d01" / "closed").mkdir()
    (src / "d01" / "closed").chmod(0o700)  # root's: nobody cannot list it
    staging = tmp_path / "staging"
    staging.mkdir()
    os.chown(staging, 65534, 65534)
    out = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, str(src), str(staging)],
        capture_output=True, text=True, check=True,
    ).stdout
    reason, scan, why = json.loads(out)
    assert reason == "cannot watch d01/closed (Permission denied)"
    assert scan == "full"
    assert why == f"change tracking gave up: {reason}"
