"""The stager: a persistent mirror of a workspace, brought up to date inside the pause.

Real files throughout; SQLite databases are written by real other processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, tree_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.errors import CleancutError, NoSpace, NotOurs
from cleancut.hot.stage import MARKER, TEMP_PREFIX, Stager

# Longer than the stager's racy window: files older than this are copied once.
SETTLE_S = 0.06


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _make_tree(src: Path) -> None:
    _write(src / "SOUL.md", b"# soul\n")
    _write(src / "memory" / "2026-11-05.md", b"notes " * 100)
    _write(src / "memory" / "deep" / "a.json", b'{"a": 1}')
    _write(src / "state" / "queue.bin", random.Random(1).randbytes(70_000))
    (src / "empty").mkdir()
    (src / "state" / "queue.bin").chmod(0o600)


def _staged_names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _inodes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.lstat().st_ino
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def _meta(path: Path) -> tuple[int, int, int, int]:
    """What the Archiver compares to decide a file is unchanged."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"


def test_layout_and_unchanged_files_are_not_copied_again(src: Path, staging: Path):
    _make_tree(src)
    time.sleep(SETTLE_S)
    stager = Stager(src, staging)
    with stager.lock():
        first = stager.capture()
        assert first.files_copied == first.files_scanned == 4
        assert first.bytes_copied == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        assert tree_state(stager.tree) == tree_state(src)
        inodes = _inodes(stager.tree)
        staged_meta = {rel: _meta(stager.tree / rel) for rel in inodes}
        again = stager.capture()
    assert (again.files_copied, again.bytes_copied, again.files_deleted) == (0, 0, 0)
    assert again.files_scanned == 4
    assert _inodes(stager.tree) == inodes
    assert {rel: _meta(stager.tree / rel) for rel in inodes} == staged_meta
    # A new stager (a new backup process) trusts the manifest it finds, after checking it.
    fresh = Stager(src, staging).capture()
    assert fresh.files_copied == 0
    assert _inodes(stager.tree) == inodes
    assert stager.tree == staging / "tree"
    assert {p.name for p in staging.iterdir()} == {
        "tree", "manifest.json", ".lock", ".cleancut-staging"
    }
    assert staging.stat().st_mode & 0o777 == 0o700
    manifest = json.loads((staging / "manifest.json").read_text())
    assert manifest["dirs"]["memory"]["2026-11-05.md"][0] == "f"
    assert json.dumps(first.to_json())


def test_changed_new_and_deleted_files_are_mirrored(src: Path, staging: Path):
    _make_tree(src)
    time.sleep(SETTLE_S)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        stager.capture()
        (src / "SOUL.md").write_bytes(b"# a new soul, longer\n")
        _write(src / "memory" / "2026-11-06.md", b"new day")
        (src / "memory" / "deep" / "a.json").unlink()
        shutil.rmtree(src / "state")
        (src / "empty").rmdir()
        _write(src / "empty", b"now a file")  # directory -> file
        (src / "memory" / "deep").rmdir()
        _write(src / "memory" / "deep" / "b" / "c.txt", b"file -> directory tree")
        os.chmod(src / "memory", 0o750)
        stats = stager.capture()
    assert tree_state(stager.tree) == tree_state(src)
    assert stats.files_deleted == 2  # deep/a.json and state/queue.bin
    assert stats.files_copied == 4
    assert not any(TEMP_PREFIX in name for name in _staged_names(stager.tree))


def test_same_size_rewrite_right_after_a_capture_is_copied(src: Path, staging: Path):
    target = src / "session.json"
    stager = Stager(src, staging)
    with stager.lock():
        for i in range(20):
            target.write_bytes(b"A%03d" % i * 64)
            stager.capture()
            target.write_bytes(b"B%03d" % i * 64)  # same size, no sleep: within the tick
            stager.capture()
            assert (stager.tree / "session.json").read_bytes() == target.read_bytes()


def test_racy_rule_recopies_a_file_whose_metadata_did_not_move(src: Path, staging: Path):
    """On a coarse clock a same-tick rewrite leaves identical metadata; this kernel's
    fine-grained timestamps would hide that, so the manifest is made to say so."""
    target = src / "session.json"
    target.write_bytes(b"old content!")
    Stager(src, staging).capture()
    target.write_bytes(b"new content!")  # same size
    st = target.stat()
    manifest_path = staging / "manifest.json"

    def forge(copy_start_ns: int) -> None:
        manifest = json.loads(manifest_path.read_text())
        entry = manifest["dirs"][""]["session.json"]
        # The source's metadata as if the rewrite had not moved it:
        entry[1:6] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, copy_start_ns]
        manifest_path.write_text(json.dumps(manifest))

    # Copied within the racy window of the file's ctime: copied again.
    forge(st.st_ctime_ns + 1_000_000)
    assert Stager(src, staging).capture().files_copied == 1
    assert (staging / "tree" / "session.json").read_bytes() == b"new content!"
    # Control: the same identical metadata, but a copy long after the change is trusted.
    (staging / "tree" / "session.json").write_bytes(b"STALE STALE!")
    os.utime(staging / "tree" / "session.json", ns=(st.st_atime_ns, st.st_mtime_ns))
    forge(st.st_ctime_ns + 10_000_000_000)
    assert Stager(src, staging).capture().files_copied == 0
    assert (staging / "tree" / "session.json").read_bytes() == b"STALE STALE!"


def test_symlinks_are_recreated_never_followed(src: Path, staging: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    _write(outside / "secret.txt", b"not part of the workspace")
    _write(src / "real.txt", b"real")
    (src / "dir").mkdir()
    os.symlink("real.txt", src / "to_file")
    os.symlink("dir", src / "to_dir")
    os.symlink(str(outside), src / "to_outside")
    os.symlink("no/such/target", src / "dangling")
    stager = Stager(src, staging)
    stager.capture()
    tree = stager.tree
    for name in ("to_file", "to_dir", "to_outside", "dangling"):
        assert (tree / name).is_symlink()
        assert os.readlink(tree / name) == os.readlink(src / name)
    assert not any("secret" in name for name in _staged_names(tree))
    assert tree_state(tree) == tree_state(src)
    (src / "to_file").unlink()
    os.symlink("dir", src / "to_file")
    (src / "real.txt").unlink()
    os.symlink("SOUL.md", src / "real.txt")  # file -> symlink
    stats = stager.capture()
    assert stats.files_copied == 2
    assert tree_state(tree) == tree_state(src)


def test_excluded_paths_are_neither_copied_nor_kept(src: Path, staging: Path):
    _make_tree(src)
    _write(src / "agent.log", b"log")
    _write(src / "memory" / "x.log", b"log")
    _write(src / "cache" / "big.bin", b"c" * 1000)
    _write(src / "build" / "out" / "o.bin", b"o")
    _write(src / "build" / "keep.txt", b"k")
    stager = Stager(src, staging, excludes=["*.log", "cache/", "build/out"])
    stager.capture()
    names = _staged_names(stager.tree)
    assert "cache" not in names and "build/out" not in names
    assert not [n for n in names if n.endswith(".log")]
    assert "build/keep.txt" in names and "memory/2026-11-05.md" in names
    # Excluding what is already staged removes it from staging.
    stats = Stager(src, staging, excludes=["*.log", "cache/", "build", "memory"]).capture()
    assert stats.files_deleted == 3
    names = _staged_names(stager.tree)
    assert not [n for n in names if n.startswith(("build", "memory"))]
    assert "SOUL.md" in names


WRITER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA wal_autocheckpoint=0")  # commits stay in the -wal; the main file is still
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)")
print("ready", flush=True)
deadline = time.time() + 60
while time.time() < deadline:
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t(body) VALUES (?)", ("x" * 100,))
    con.execute("COMMIT")
    time.sleep(0.0005)
"""


@contextlib.contextmanager
def _process(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _rows(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        count, top = con.execute("SELECT count(*), coalesce(max(id), 0) FROM t").fetchone()
        return count, top
    finally:
        con.close()


def test_wal_database_written_by_another_process(src: Path, staging: Path):
    db = src / "state.db"
    stager = Stager(src, staging)
    with _process(WRITER, str(db)):
        deadline = time.time() + 10
        while _rows(db)[0] < 50 and time.time() < deadline:
            time.sleep(0.01)
        with stager.lock():
            prepared = stager.prepare()
            assert prepared.sqlite_copied == 1
            main_before = db.stat()
            time.sleep(0.2)
            committed, top = _rows(db)
            assert committed == top  # ids are contiguous
            stats = stager.capture()  # while the writer keeps committing
            main_after = db.stat()
        rows_now = _rows(db)[0]
    # The commits since prepare() only touched the -wal: that alone must trigger the copy.
    assert (main_before.st_size, main_before.st_mtime_ns) == (
        main_after.st_size,
        main_after.st_mtime_ns,
    )
    assert stats.sqlite_copied == 1
    staged = stager.tree / "state.db"
    count, top = _rows(staged)
    assert count == top >= committed
    assert rows_now >= count
    assert stager.verify() == []
    # Self-contained: DELETE journal mode in the header, and no SQLite sidecar staged.
    assert staged.read_bytes()[18:20] == b"\x01\x01"
    assert not [n for n in _staged_names(staging) if n.endswith(("-wal", "-shm", "-journal"))]
    con = sqlite3.connect(f"file:{staged}?mode=ro", uri=True)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    # The writer is gone; nothing changed since: nothing is copied again.
    time.sleep(SETTLE_S)
    stager.capture()
    assert stager.capture().files_copied == 0


LOCKER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)")
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO t DEFAULT VALUES")
print("ready", flush=True)
time.sleep(60)
"""


def test_a_database_locked_too_long_fails_after_bounded_retries(src: Path, staging: Path):
    db = src / "locked.db"
    stager = Stager(src, staging, sqlite_timeout=0.05)
    with _process(LOCKER, str(db)):
        started = time.monotonic()
        with pytest.raises(CleancutError, match="cannot copy SQLite database locked.db: .*lock"):
            stager.capture()
        assert time.monotonic() - started < 10  # bounded retries, not a wait for the lock
        # Outside the pause the database is left for the capture, with a warning.
        prepared = stager.prepare()
        assert prepared.warnings and "locked.db" in prepared.warnings[0]
        assert "locked.db" not in _staged_names(stager.tree)
    stager.capture()
    assert _rows(stager.tree / "locked.db") == (0, 0)  # the locker never committed


def test_an_unreadable_database_is_staged_byte_for_byte(src: Path, staging: Path):
    junk = b"SQLite format 3\x00" + random.Random(5).randbytes(5000)
    _write(src / "broken.db", junk)
    stats = Stager(src, staging).capture()
    assert stats.sqlite_copied == 0 and any("broken.db" in w for w in stats.warnings)
    assert tree_state(staging / "tree") == tree_state(src)


@pytest.mark.parametrize("damage", ["corrupt", "missing", "tree-missing", "other-boot"])
def test_an_untrustworthy_manifest_means_a_full_copy(src: Path, staging: Path, damage: str):
    _make_tree(src)
    time.sleep(SETTLE_S)
    Stager(src, staging).capture()
    tree = staging / "tree"
    manifest = staging / "manifest.json"
    # Staged content without a manifest entry must never be trusted: plant a wrong copy.
    (tree / "SOUL.md").write_bytes(b"# wrong!\n")
    os.utime(tree / "SOUL.md", ns=(0, (src / "SOUL.md").stat().st_mtime_ns))
    _write(tree / "stray.txt", b"not in the source")
    if damage == "corrupt":
        manifest.write_bytes(manifest.read_bytes()[:100] + b"\x00garbage")
    elif damage == "missing":
        manifest.unlink()
    elif damage == "tree-missing":
        shutil.rmtree(tree)
    else:
        data = json.loads(manifest.read_text())
        data["boot_id"] = "an earlier boot: unsynced staged data may be lost"
        manifest.write_text(json.dumps(data))
    stats = Stager(src, staging).capture()
    assert stats.files_copied == 4
    assert tree_state(tree) == tree_state(src)


def test_a_damaged_staged_copy_is_not_trusted_by_a_new_stager(src: Path, staging: Path):
    _make_tree(src)
    time.sleep(SETTLE_S)
    Stager(src, staging).capture()
    tree = staging / "tree"
    (tree / "SOUL.md").unlink()  # a staged copy gone
    # Another inode: written beside it, then renamed over it (an unlink first would let
    # the filesystem hand the same inode number to the new file).
    _write(tree / "memory" / "replacement", b"replaced by someone")
    os.replace(tree / "memory" / "replacement", tree / "memory" / "2026-11-05.md")
    _write(tree / "memory" / (TEMP_PREFIX + "0123456789abcdef"), b"left by a crash")
    stats = Stager(src, staging).capture()
    assert stats.files_copied == 2
    assert tree_state(tree) == tree_state(src)


def test_the_lock_refuses_a_second_stager(src: Path, staging: Path):
    _make_tree(src)
    first = Stager(src, staging)
    second = Stager(src, staging)
    with first.lock():
        first.capture()
        with pytest.raises(CleancutError, match="another backup is staging .*src"), second.lock():
            pass
        with pytest.raises(CleancutError, match="another backup is staging"):
            second.capture()
    second.capture()  # free again


def test_staging_inside_the_source_is_refused(src: Path):
    with pytest.raises(CleancutError, match="must not contain each other"):
        Stager(src, src / ".staging")


def _fill(path: Path) -> None:
    with open(path, "wb") as f:
        chunk = b"\0" * (64 << 10)
        while True:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_full_disk_raises_no_space_and_staging_stays_usable(src: Path, tmp_path: Path, kind: str):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)]
    done = subprocess.run(mount, capture_output=True, text=True)
    assert done.returncode == 0, f"root cannot mount a tmpfs here: {done.stderr}"
    try:
        _make_tree(src)
        time.sleep(SETTLE_S)
        stager = Stager(src, mnt / "staging")
        with stager.lock():
            stager.capture()
            if kind == "file":
                _write(src / "big.bin", random.Random(2).randbytes(3 << 20))
            else:
                con = sqlite3.connect(src / "big.db")
                con.execute("CREATE TABLE t(b BLOB)")
                con.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4000),)] * 800)
                con.commit()
                con.close()
            time.sleep(SETTLE_S)  # so that the copy below is not "racy" and redone
            _fill(mnt / "filler")
            with pytest.raises(NoSpace, match="^no space left on device while staging: /") as e:
                stager.capture()
            assert str(e.value).endswith(f"/tree/big.{'bin' if kind == 'file' else 'db'}")
            (mnt / "filler").unlink()
            stager.capture()
        names = _staged_names(stager.tree)
        assert not [n for n in names if TEMP_PREFIX in n]
        if kind == "file":
            assert tree_state(stager.tree) == tree_state(src)
        else:
            assert _rows_blob(stager.tree / "big.db") == 800
        assert Stager(src, mnt / "staging").capture().files_copied == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _rows_blob(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        con.close()


def test_in_pause_capture_of_10k_unchanged_files_copies_nothing(src: Path, staging: Path):
    # Its speed is measured in benchmarks/pause.py, not asserted here (shared machines).
    payload = random.Random(3).randbytes(4096)
    for d in range(100):
        folder = src / f"d{d:02d}"
        folder.mkdir()
        for f in range(100):
            (folder / f"f{f:02d}.json").write_bytes(payload[: 100 + d * 30 + f])
    time.sleep(SETTLE_S)
    stager = Stager(src, staging)
    with stager.lock():
        stager.prepare()
        for _ in range(2):
            stats = stager.capture()
            assert stats.files_copied == 0 and stats.files_scanned == 10_000


def test_the_archiver_skips_unchanged_staged_files(repo_cli: CLI, workspace: Path, tmp_path: Path):
    old = time.time() - 3600  # outside the Archiver's own racy window
    for path in workspace.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (old, old))
    time.sleep(SETTLE_S)  # else the next capture re-copies them (racy), with new inodes
    stager = Stager(workspace, tmp_path / "staging")
    stager.capture()
    tree = str(stager.tree)
    repo_cli.ok("backup", tree, "--json")
    stager.capture()
    again = repo_cli.ok("backup", tree, "--json").json()
    assert again["files_unchanged"] == again["files"] and again["bytes_read"] == 0
    note = workspace / "workspace" / "MEMORY.md"
    note.write_text(note.read_text() + "one more line\n")
    stager.capture()
    third = repo_cli.ok("backup", tree, "--json").json()
    assert third["files_changed"] == 1 and third["bytes_read"] == note.stat().st_size


# --- property: after any sequence of changes, a capture makes staging equal the source ---

NAMES = ["a", "b", "d/a", "d/b", "d/e/a", "e", "e/f"]
_ops = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), st.binary(max_size=48)),
    st.tuples(st.just("rewrite"), st.sampled_from(NAMES), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("mkdir"), st.sampled_from(NAMES)),
    st.tuples(st.just("symlink"), st.sampled_from(NAMES), st.sampled_from(["a", "d", "../x"])),
    st.tuples(st.just("chmod"), st.sampled_from(NAMES), st.sampled_from([0o600, 0o644, 0o755])),
    st.tuples(st.just("reopen")),
    # Files big enough for a tail copy, grown by appends (and rewritten, then grown).
    st.tuples(st.just("big"), st.sampled_from(NAMES), st.integers(0, 255)),
    st.tuples(st.just("append"), st.sampled_from(NAMES), st.binary(min_size=1, max_size=48)),
)


def _clear(path: Path) -> None:
    """Free `path` (removing whatever is there), its parents being directories."""
    for parent in reversed(path.parents):
        if parent.is_symlink() or parent.is_file():
            parent.unlink()
        parent.mkdir(exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _apply(src: Path, op: tuple) -> None:
    kind = op[0]
    path = src / op[1] if len(op) > 1 else src
    if kind == "write":
        _clear(path)
        path.write_bytes(op[2])
    elif kind == "rewrite":  # in place, same size, no truncation: the racy case
        if path.is_file() and not path.is_symlink() and path.stat().st_size:
            with open(path, "r+b") as f:
                f.write(bytes([op[2]]) * path.stat().st_size)
    elif kind == "big":
        _clear(path)
        path.write_bytes(random.Random(op[2]).randbytes(9000))
    elif kind == "append":
        if path.is_file() and not path.is_symlink():
            with open(path, "ab") as f:
                f.write(op[2])
    elif kind == "delete":
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    elif kind == "rename":
        dest = src / op[2]
        if (path.exists() or path.is_symlink()) and path != dest and path not in dest.parents:
            _clear(dest)
            if path.exists() or path.is_symlink():
                os.rename(path, dest)
    elif kind == "mkdir":
        _clear(path)
        path.mkdir()
    elif kind == "symlink":
        _clear(path)
        os.symlink(op[2], path)
    elif kind == "chmod" and path.exists() and not path.is_symlink():
        path.chmod(op[2])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_ops, min_size=1, max_size=14))
def test_property_staging_equals_the_source_after_every_capture(ops: list[tuple]):
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as held:
        src = Path(tmp) / "src"
        src.mkdir()
        staging = Path(tmp) / "staging"
        stager = Stager(src, staging)
        held.enter_context(stager.lock())
        for op in ops:
            if op[0] == "reopen":  # a new backup process: load and check the manifest
                held.close()
                stager = Stager(src, staging)
                held.enter_context(stager.lock())
            else:
                _apply(src, op)
            stager.capture()
            assert tree_state(stager.tree) == tree_state(src), op


def test_torn_copies_from_prepare_are_fixed_by_capture(src: Path, staging: Path):
    """Files rewritten while prepare() copies them, up to the instant of the pause."""
    rng = random.Random(7)
    for i in range(30):
        _write(src / f"f{i}.bin", rng.randbytes(rng.choice([4096, 5000, 70_000])))
    stop = threading.Event()

    def agent() -> None:
        r = random.Random(8)
        while not stop.is_set():
            path = src / f"f{r.randrange(30)}.bin"
            size = r.choice([path.stat().st_size, 4096, 70_000])
            with open(path, "r+b") as f:  # in place, often the same size
                f.write(r.randbytes(size))
                f.truncate(size)

    stager = Stager(src, staging)
    with stager.lock():
        for _ in range(5):
            stop.clear()
            writer = threading.Thread(target=agent)
            writer.start()
            stager.prepare()
            stager.prepare()
            stop.set()  # the pause: the agent is quiet from here on
            writer.join()
            stager.capture()  # at once: the last writes are within the clock's tick
            assert tree_state(stager.tree) == tree_state(src)


def test_reflinks_where_the_filesystem_shares_extents(tmp_path: Path):
    assert shutil.which("mkfs.xfs"), "mkfs.xfs is missing: `make test` installs xfsprogs"
    if os.geteuid() != 0:
        pytest.skip("mounting an XFS image needs root")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(320 << 20)
    mkfs = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    mnt = tmp_path / "xfs"
    mnt.mkdir()
    assert mkfs.returncode == 0, mkfs.stderr
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True)
    assert mounted.returncode == 0, f"root cannot loop-mount an XFS image: {mounted.stderr!r}"
    try:
        src = mnt / "src"
        _make_tree(src)
        stats = Stager(src, mnt / "staging").capture()
        assert stats.reflinked == stats.files_copied == 4
        assert tree_state(mnt / "staging" / "tree") == tree_state(src)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# --- refusing a staging directory that is not ours ---------------------------------


def test_a_staging_directory_with_someone_elses_files_is_refused_untouched(
    src: Path, tmp_path: Path
) -> None:
    _make_tree(src)
    staging = tmp_path / "photos"
    _write(staging / "holiday.jpg", b"jpeg")
    _write(staging / "tree" / "keep.txt", b"a tree of my own")  # even a name we use
    before = tree_state(staging)
    with pytest.raises(NotOurs, match="no .cleancut-staging marker"):
        Stager(src, staging).capture()
    assert tree_state(staging) == before


def test_a_staging_path_that_is_a_file_is_refused_untouched(src: Path, tmp_path: Path) -> None:
    _make_tree(src)
    staging = tmp_path / "notes.txt"
    staging.write_text("mine")
    with pytest.raises(NotOurs, match="is not a directory"):
        Stager(src, staging).capture()
    assert staging.read_text() == "mine"


@pytest.mark.parametrize("kind", ["new", "empty"])
def test_a_new_or_empty_staging_directory_is_claimed(
    src: Path, tmp_path: Path, kind: str
) -> None:
    _make_tree(src)
    staging = tmp_path / "staging"
    if kind == "empty":
        staging.mkdir()
    time.sleep(SETTLE_S)
    Stager(src, staging).capture()
    assert (staging / MARKER).is_file()
    assert Stager(src, staging).capture().files_copied == 0  # ours now: reused as it is


def test_a_staging_directory_from_before_the_marker_is_still_ours(
    src: Path, staging: Path
) -> None:
    _make_tree(src)
    time.sleep(SETTLE_S)
    Stager(src, staging).capture()
    (staging / MARKER).unlink()  # as an older cleancut left it
    assert Stager(src, staging).capture().files_copied == 0
    assert (staging / MARKER).is_file()


# --- what moved after a capture (writes behind a quiesce) ---------------------------


def _captured(src: Path, staging: Path, excludes: list[str] | None = None) -> Stager:
    stager = Stager(src, staging, excludes)
    stager.capture()
    assert stager.changed_since_capture() == []
    return stager


def test_nothing_moved_after_a_capture_is_an_empty_list(src: Path, staging: Path) -> None:
    _make_tree(src)
    (src / "link").symlink_to("SOUL.md")
    with _captured(src, staging).lock():
        pass


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: (s / "SOUL.md").write_bytes(b"# soul\n"), "SOUL.md"),  # same bytes, new times
        (lambda s: (s / "memory" / "deep" / "a.json").write_bytes(b"{}"), "memory/deep/a.json"),
        (lambda s: (s / "state" / "queue.bin").unlink(), "state/queue.bin"),
        (lambda s: (s / "memory" / "new.md").write_bytes(b"new"), "memory/new.md"),
        (lambda s: (s / "empty" / "sub").mkdir(), "empty/sub"),
        (lambda s: shutil.rmtree(s / "memory" / "deep"), "memory/deep"),
        (lambda s: os.chmod(s / "SOUL.md", 0o600), "SOUL.md"),  # ctime
        (lambda s: os.replace(s / "SOUL.md", s / "memory" / "2026-11-05.md"), "SOUL.md"),
    ],
)
def test_each_kind_of_write_after_a_capture_is_named(
    src: Path, staging: Path, change: object, expected: str
) -> None:
    _make_tree(src)
    stager = _captured(src, staging)
    change(src)  # type: ignore[operator]
    assert expected in stager.changed_since_capture()


def test_a_retargeted_symlink_is_named(src: Path, staging: Path) -> None:
    _make_tree(src)
    (src / "link").symlink_to("SOUL.md")
    stager = _captured(src, staging)
    (src / "link").unlink()
    (src / "link").symlink_to("memory")
    assert stager.changed_since_capture() == ["link"]


def test_an_excluded_file_or_sqlite_sidecar_is_not_a_change(src: Path, staging: Path) -> None:
    _make_tree(src)
    stager = _captured(src, staging, excludes=["*.log"])
    (src / "agent.log").write_bytes(b"excluded")
    (src / "state" / "x.db-shm").write_bytes(b"")  # a database's sidecar: not staged
    assert stager.changed_since_capture() == []


def test_a_commit_into_the_wal_after_a_capture_is_named(src: Path, staging: Path) -> None:
    db = src / "memory.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t (v TEXT)")
    con.execute("INSERT INTO t VALUES ('one')")
    try:
        stager = _captured(src, staging)
        main = db.stat()
        con.execute("INSERT INTO t VALUES ('two')")  # lands in memory.db-wal only
        assert (db.stat().st_size, db.stat().st_mtime_ns) == (main.st_size, main.st_mtime_ns)
        assert stager.changed_since_capture() == ["memory.db"]
    finally:
        con.close()
