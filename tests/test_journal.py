"""Journal mode: the writer, the reader's verdicts and replay, on real files.

The property tests drive random mutations through the writer into a live
workspace and check that replaying the journal gives the live workspace back
at every sequence number. The fault tests damage real segment files the way
disks and operators do (a torn tail, a flipped bit, garbage, a lost or copied
segment, a forged record) and check each is named precisely and that replay up
to the last good record is still possible.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.errors import CleancutError
from cleancut.journal.frame import (
    MAGIC,
    ZERO_HASH,
    Append,
    JournalError,
    JournalRecord,
    Put,
    Rename,
    ReplayMismatch,
    list_segments,
    segment_name,
)
from cleancut.journal.replay import Replayer, read_marker, replay, replay_into
from cleancut.journal.scan import (
    BROKEN_LINK,
    CORRUPT,
    DUPLICATE,
    GAP,
    INVALID,
    TORN_TAIL,
    read_journal,
)
from cleancut.sdk.journal_writer import Journal
from cleancut.sdk.server import ControlServer

# --- trees and a model --------------------------------------------------------


def tree(root: Path, modes: bool = True) -> dict[str, tuple]:
    """Everything under root: dirs, files (content, mode) and symlinks."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            st_ = full.lstat()
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir",)
            else:
                mode = stat.S_IMODE(st_.st_mode) if modes else None
                out[rel] = ("file", full.read_bytes(), mode)
    return out


def materialize(snapshot: dict[str, tuple], root: Path) -> None:
    root.mkdir(parents=True)
    for rel, entry in sorted(snapshot.items()):
        path = root / rel
        if entry[0] == "dir":
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry[1])
            path.chmod(entry[2])


class Model:
    """What the workspace must hold, by the journal's documented semantics."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    def _parents(self, path: str) -> None:
        parts = path.split("/")
        for k in range(1, len(parts)):
            self.dirs.add("/".join(parts[:k]))

    def apply(self, op: tuple) -> None:
        kind, path = op[0], op[1]
        if kind == "put":
            self._parents(path)
            self.files[path] = op[2]
        elif kind == "append":
            self._parents(path)
            self.files[path] = self.files.get(path, b"") + op[2]
        elif kind == "mkdir":
            self._parents(path)
            self.dirs.add(path)
        elif kind == "delete":
            self._drop(path)
        elif kind == "rename":
            dst = op[2]
            self._parents(dst)
            if path in self.files:
                self.files[dst] = self.files.pop(path)
            else:
                moved_files = {p: d for p, d in self.files.items() if _at_or_under(p, path)}
                moved_dirs = {p for p in self.dirs if _at_or_under(p, path)}
                self._drop(path)
                for p, d in moved_files.items():
                    self.files[dst + p[len(path) :]] = d
                for p in moved_dirs:
                    self.dirs.add(dst + p[len(path) :])

    def _drop(self, path: str) -> None:
        self.files = {p: d for p, d in self.files.items() if not _at_or_under(p, path)}
        self.dirs = {p for p in self.dirs if not _at_or_under(p, path)}

    def tree(self) -> dict[str, tuple]:
        out: dict[str, tuple] = {d: ("dir",) for d in self.dirs}
        out.update({p: ("file", d, None) for p, d in self.files.items()})
        return out


def _at_or_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent + "/")


def call(journal: Journal, op: tuple) -> None:
    kind = op[0]
    if kind == "put":
        journal.put(op[1], op[2], op[3])
    elif kind == "append":
        journal.append(op[1], op[2])
    elif kind == "delete":
        journal.delete(op[1])
    elif kind == "rename":
        journal.rename(op[1], op[2])
    else:
        journal.mkdir(op[1])


REFUSED = (OSError, ValueError)  # what the writer raises for an operation that cannot apply


# --- replay equals live state (property) ------------------------------------------

PATHS = ["a", "b", "d/a", "d/b", "d/e/f", "e", "e/g"]
DIRS = ["d", "e", "d/e", "m", "m/n"]
_data = st.binary(max_size=24)
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(PATHS), _data, st.sampled_from([None, 0o600])),
    st.tuples(st.just("append"), st.sampled_from(PATHS), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("append"), st.sampled_from(PATHS), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("delete"), st.sampled_from(PATHS + ["d", "e"])),
    st.tuples(
        st.just("rename"), st.sampled_from(PATHS + ["d", "e"]), st.sampled_from(PATHS + DIRS)
    ),
    st.tuples(st.just("mkdir"), st.sampled_from(DIRS)),
)
_step = st.one_of(
    _op.map(lambda op: ("one", [op])),
    _op.map(lambda op: ("one", [op])),
    st.lists(_op, min_size=1, max_size=5).map(lambda ops: ("tx", ops)),
)


def drive(journal: Journal, ws: Path, steps: list, model: Model) -> dict[int, dict]:
    """Run steps through the writer; the live tree at every sequence number."""
    states = {journal.last_seq: tree(ws)}
    for kind, ops in steps:
        if kind == "one":
            try:
                call(journal, ops[0])
            except REFUSED:
                continue
            model.apply(ops[0])
        else:
            done = []
            with journal.transaction():
                for op in ops:
                    try:
                        call(journal, op)
                    except REFUSED:
                        continue
                    done.append(op)
            for op in done:
                model.apply(op)
        live = tree(ws)
        assert tree(ws, modes=False) == model.tree()
        states[journal.last_seq] = live
    return states


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(_step, min_size=1, max_size=25), pick=st.randoms(use_true_random=False))
def test_replay_equals_live_state_at_every_seq(steps: list, pick: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws, jdir = root / "ws", root / "journal"
        ws.mkdir()
        model = Model()
        with Journal(jdir, ws, segment_bytes=400) as journal:
            states = drive(journal, ws, steps, model)
            last = journal.last_seq
        scan = read_journal(jdir)
        records = list(scan)
        assert not scan.problems and not scan.warnings
        assert [r.seq for r in records] == list(range(1, last + 1))

        # Onto an empty directory, record by record: the live tree at every n.
        target = root / "replay"
        target.mkdir()
        with Replayer(target) as replayer:
            for record in records:
                replayer.apply(record)
                assert tree(target) == states[record.seq]

        # Onto a copy of the workspace taken at seq k, then records k+1..n.
        k = pick.choice(sorted(states))
        copy = root / "copy"
        materialize(states[k], copy)
        marker = root / "copy.applied"
        result = replay_into(copy, jdir, after_seq=k, marker=marker)
        assert tree(copy) == states[last]
        assert result.last_seq == last and result.records == last - k

        # Replaying again is a no-op (the marker says it is done) ...
        again = replay_into(copy, jdir, after_seq=k, marker=marker)
        assert again.records == 0 and again.skipped == last - k
        assert tree(copy) == states[last]
        # ... and so is re-applying a single-operation record onto its own result.
        if records and len(records[-1].ops) == 1:
            replay([records[-1]], copy)
            assert tree(copy) == states[last]
        assert not [n for n in os.listdir(copy) if n.startswith(".ccj-")]


def test_transaction_discarded_on_exception_and_nested_savepoint(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with Journal(tmp_path / "j", ws) as journal:
        with pytest.raises(RuntimeError), journal.transaction():
            journal.put("a", b"1")
            raise RuntimeError("agent bug")
        assert journal.last_seq == 0 and not (ws / "a").exists()
        with journal.transaction() as tx:
            journal.put("a", b"1")
            with pytest.raises(KeyError), journal.transaction():
                journal.put("b", b"2")
                raise KeyError("inner")
            journal.append("a", b"2")
            assert not (ws / "a").exists()  # nothing applies before the record is durable
        assert tx.seq == 1 and journal.last_seq == 1
        assert (ws / "a").read_bytes() == b"12" and not (ws / "b").exists()
        records = list(read_journal(tmp_path / "j"))
        assert records[0].ops == (Put("a", b"1"), Append("a", 1, b"2"))


def test_refused_operations_write_no_record(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "outside").mkdir()
    (ws / "link").symlink_to(tmp_path / "outside")
    with Journal(tmp_path / "j", ws) as journal:
        journal.put("f", b"x")
        with pytest.raises(ValueError):
            journal.put("../escape", b"x")
        with pytest.raises(ValueError):
            journal.put("/etc/passwd", b"x")
        with pytest.raises(ValueError):
            journal.put(".ccj-old-1-0", b"x")
        with pytest.raises(NotADirectoryError):
            journal.put("link/x", b"x")  # a symlinked directory is never written through
        with pytest.raises(NotADirectoryError):
            journal.put("f/x", b"x")
        with pytest.raises(FileNotFoundError):
            journal.rename("nope", "b")
        journal.mkdir("dir")
        with pytest.raises(IsADirectoryError):
            journal.append("dir", b"x")
        journal.delete("nope")  # absent: nothing to record
        journal.mkdir("dir")  # exists: nothing to record
        assert journal.last_seq == 2
    assert os.listdir(tmp_path / "outside") == []


def test_journal_inside_the_workspace_is_protected(tmp_path: Path) -> None:
    with Journal(tmp_path / ".journal", tmp_path) as journal:
        journal.put("a", b"x")
        with pytest.raises(ValueError):
            journal.put(".journal/00000000000000000001.jnl", b"x")
        with pytest.raises(ValueError):
            journal.rename("a", ".journal")


# --- crashes: the write-ahead rule and replay's marker --------------------------------

CRASH_OPS = [
    ("put", "a", b"new-a", None),
    ("rename", "a", "b", None),
    ("put", "a", b"again", None),
    ("append", "b", b"+tail"),
    ("delete", "d"),
    ("mkdir", "m/n"),
    ("rename", "e", "f"),
]


def _prepare_crash_workspace(journal: Journal) -> Model:
    model = Model()
    for op in [
        ("put", "a", b"old-a", None),
        ("put", "b", b"old-b", None),
        ("append", "d/log", b"0123456789"),
        ("put", "e/x", b"ex", None),
    ]:
        call(journal, op)
        model.apply(op)
    return model


def _crash_child(jdir: Path, ws: Path, crash_after: int) -> None:
    """In a forked child: run the transaction and die (os._exit) after `crash_after` ops."""
    original = Replayer._apply_op
    count = {"n": 0}

    def dying(self: Replayer, record: JournalRecord, i: int, undo: list, kept: list) -> None:
        if count["n"] == crash_after:
            os._exit(0)
        original(self, record, i, undo, kept)
        count["n"] += 1
        if count["n"] == crash_after and crash_after == len(record.ops):
            os._exit(0)

    Replayer._apply_op = dying  # type: ignore[method-assign]
    journal = Journal(jdir, ws)
    with journal.transaction():
        for op in CRASH_OPS:
            call(journal, op)
    os._exit(1)  # not reached: the crash comes first


@pytest.mark.parametrize("crash_after", range(len(CRASH_OPS) + 1))
def test_crash_mid_transaction_is_finished_on_reopen(
    tmp_path: Path, crash_after: int, capfd: pytest.CaptureFixture[str]
) -> None:
    ws, jdir = tmp_path / "ws", tmp_path / "j"
    ws.mkdir()
    with Journal(jdir, ws) as journal:
        model = _prepare_crash_workspace(journal)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _crash_child(jdir, ws, crash_after)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_marker(jdir / "applied")[0] == 4  # the record is durable, not (fully) applied
    with Journal(jdir, ws) as journal:  # reopening finishes it
        assert journal.last_seq == journal.applied_seq == 5
    for op in CRASH_OPS:
        model.apply(op)
    assert tree(ws, modes=False) == model.tree()
    assert "re-applied records 5..5" in capfd.readouterr().err


def test_a_failing_operation_rolls_the_whole_record_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, jdir = tmp_path / "ws", tmp_path / "j"
    ws.mkdir()
    with Journal(jdir, ws) as journal:
        _prepare_crash_workspace(journal)
        with journal.transaction():
            for op in CRASH_OPS:
                call(journal, op)
    record = list(read_journal(jdir))[-1]
    for fail_at in range(len(CRASH_OPS)):
        target = tmp_path / f"t{fail_at}"
        replay_into(target_dir(target), jdir, upto_seq=4)
        before = tree(target)
        original = Replayer._apply_op

        def failing(self, rec, i, undo, kept, fail_at=fail_at, original=original):  # noqa: ANN001
            if i == fail_at:
                raise OSError(errno.EIO, "injected I/O error")
            original(self, rec, i, undo, kept)

        monkeypatch.setattr(Replayer, "_apply_op", failing)
        marker = tmp_path / f"m{fail_at}"
        with Replayer(target, marker) as replayer:
            replayer.start_after(4)
            with pytest.raises(CleancutError, match="left at record 4"):
                replayer.apply(record)
        assert tree(target) == before  # not one op of the record shows
        assert read_marker(marker) == (4, 0)
        monkeypatch.setattr(Replayer, "_apply_op", original)
        replay_into(target, jdir, after_seq=4, marker=marker)
        assert tree(target) == tree(ws)


def target_dir(path: Path) -> Path:
    path.mkdir()
    return path


def test_apply_failure_after_the_fsync_stops_the_writer_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, jdir = tmp_path / "ws", tmp_path / "j"
    ws.mkdir()
    journal = Journal(jdir, ws)
    journal.put("a", b"1")
    original = Replayer._apply_op

    def failing(self, rec, i, undo, kept):  # noqa: ANN001
        raise OSError(errno.EIO, "disk gone")

    monkeypatch.setattr(Replayer, "_apply_op", failing)
    with pytest.raises(CleancutError):
        journal.append("a", b"2")
    monkeypatch.setattr(Replayer, "_apply_op", original)
    with pytest.raises(JournalError, match="durable but was not applied"):
        journal.append("a", b"3")
    journal.close()
    with Journal(jdir, ws) as journal:
        assert journal.last_seq == 2 and (ws / "a").read_bytes() == b"12"


# --- restart and sequence numbers --------------------------------------------------


def test_restart_continues_the_sequence(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ws, jdir = tmp_path / "ws", tmp_path / "j"
    ws.mkdir()
    with Journal(jdir, ws) as journal:
        for i in range(5):
            journal.append("log", b"%d\n" % i)
    with Journal(jdir, ws) as journal:
        assert journal.last_seq == 5
        journal.append("log", b"5\n")
        assert journal.last_seq == 6
    # A crash mid-write: part of record 7 reached the disk, nothing of it was applied.
    frame, _ = _frame_of(jdir, 7, Append("log", 12, b"never"))
    seg = list_segments(jdir)[-1][1]
    with open(seg, "ab") as f:
        f.write(frame[:-9])
    capfd.readouterr()
    with Journal(jdir, ws) as journal:
        assert journal.last_seq == 6
        journal.append("log", b"6\n")
        assert journal.last_seq == 7  # 7 reused only because it never existed durably
    assert "torn tail dropped: record 7" in capfd.readouterr().err
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(1, 8)) and not scan.problems
    assert (ws / "log").read_bytes() == b"".join(b"%d\n" % i for i in range(7))
    with pytest.raises(JournalError, match="another process"), Journal(jdir, ws):
        Journal(jdir, ws)


def test_start_after_a_restore_never_reuses_numbers(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    jdir = tmp_path / "j2"
    with Journal(jdir, ws, start_after=100) as journal:
        assert journal.last_seq == 100
        journal.put("a", b"x")
        assert journal.last_seq == 101
    with Journal(jdir, ws) as journal:
        journal.put("a", b"y")
        assert journal.last_seq == 102
    with Journal(jdir, ws, start_after=100) as journal:  # already past it: ignored
        journal.put("a", b"z")
        assert journal.last_seq == 103
    with pytest.raises(JournalError, match="gap"):
        Journal(jdir, ws, start_after=500)
    records = list(read_journal(jdir))
    assert records[0].seq == 101 and records[0].prev == ZERO_HASH  # a base record
    assert list_segments(jdir)[0][1].name == segment_name(101)
    assert [r.seq for r in read_journal(jdir, after_seq=100)] == [101, 102, 103]
    scan = read_journal(jdir, after_seq=50)
    assert list(scan) == [] and scan.stopped_by.kind == GAP
    assert scan.stopped_by.lost == (51, 100)
    # An empty journal started after 100 and reopened before any record keeps its base.
    jdir3 = tmp_path / "j3"
    Journal(jdir3, ws, start_after=100).close()
    with Journal(jdir3, ws) as journal:
        journal.put("b", b"1")
        assert journal.last_seq == 101


# --- faults on real files ------------------------------------------------------------


def build(
    tmp: Path, n: int = 40, segment_bytes: int = 4 << 20, seed: int = 1
) -> tuple[Path, Path, dict[int, dict], list[JournalRecord]]:
    """A journal of n records (appends, puts, renames, transactions) and the live tree at each."""
    rng = random.Random(seed)
    ws, jdir = tmp / "ws", tmp / "journal"
    ws.mkdir()
    states = {0: {}}
    with Journal(jdir, ws, segment_bytes=segment_bytes) as journal:
        while journal.last_seq < n:
            roll = rng.random()
            name = rng.choice(["t1.log", "t2.log", "mem/notes.md"])
            if roll < 0.6:
                journal.append(name, rng.randbytes(rng.randint(20, 200)))
            elif roll < 0.8:
                journal.put("mem/state.json", rng.randbytes(rng.randint(5, 60)))
            elif roll < 0.9 and (ws / "mem" / "state.json").exists():
                journal.rename("mem/state.json", "mem/state.bak")
            else:
                with journal.transaction():
                    journal.append("t1.log", b"tx")
                    journal.put("mem/tx", rng.randbytes(10))
            states[journal.last_seq] = tree(ws)
    records = list(read_journal(jdir))
    assert len(records) == n
    return jdir, ws, states, records


def fresh(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def test_torn_tail_by_a_random_number_of_bytes(tmp_path: Path) -> None:
    jdir, _, states, records = build(tmp_path, n=30)
    seg_path = list_segments(jdir)[-1][1]
    original = seg_path.read_bytes()
    rng = random.Random(7)
    for trial in range(8):
        cut = rng.randint(1, len(original) - 1)
        seg_path.write_bytes(original[: len(original) - cut])
        keep = len(original) - cut
        whole = [r for r in records if r.offset + r.size <= keep]
        last_good = whole[-1].seq if whole else 0
        scan = read_journal(jdir)
        assert [r.seq for r in scan] == list(range(1, last_good + 1))
        assert scan.stopped_by is None and scan.error() is None
        at_boundary = any(r.offset + r.size == keep for r in records) or keep == 0
        if at_boundary:
            assert scan.warnings == []
        else:
            (warning,) = scan.warnings
            assert warning.kind == TORN_TAIL and warning.seq == last_good + 1
            assert f"record {last_good + 1}" in warning.message
        target = fresh(tmp_path, f"t{trial}")
        result = replay_into(target, jdir)
        assert tree(target) == states[last_good]
        assert (result.last_seq or 0) == last_good
    seg_path.write_bytes(original)


def _flip(path: Path, byte: int, bit: int) -> bytes:
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))
    return original


@pytest.mark.parametrize("where", ["magic", "length", "header", "payload", "checksum", "random"])
def test_flipped_bit_in_a_middle_record(tmp_path: Path, where: str) -> None:
    jdir, ws, states, records = build(tmp_path, n=30)
    victim = records[14]
    rng = random.Random(where)
    offset = {
        "magic": 1,
        "length": 6,
        "header": 8 + 3,  # the sequence number
        "payload": victim.size - 10,
        "checksum": victim.size - 2,
        "random": rng.randrange(victim.size),
    }[where]
    seg = list_segments(jdir)[0][1]
    _flip(seg, victim.offset + offset, rng.randrange(8))

    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(1, 15))
    problem = scan.stopped_by
    assert problem is not None and problem.kind == CORRUPT
    assert (problem.last_good, problem.seq, problem.lost) == (14, 15, (15, 15))
    err = scan.error()
    assert isinstance(err, JournalError) and err.exit_code == 17
    assert "last good record 14" in str(err) and "record 15 lost" in str(err)

    # Restore up to the last good point is still possible.
    target = fresh(tmp_path, "upto")
    result = replay_into(target, jdir)
    assert tree(target) == states[14] and result.last_seq == 14
    assert result.scan is not None and result.scan.error() is not None

    # accept_loss: exactly record 15 is skipped, the rest replays (leniently).
    lossy = read_journal(jdir, accept_loss=True)
    seqs = [(r.seq, r.after_loss) for r in lossy]
    assert seqs == [(s, s > 15) for s in range(1, 31) if s != 15]
    assert lossy.stopped_by is None and lossy.problems[0].skipped
    target = fresh(tmp_path, "lossy")
    result = replay_into(target, jdir, accept_loss=True)
    assert result.last_seq == 30
    touched = {path for op in victim.ops for path in getattr(op, "path", "-").split()}
    for path in ("t1.log", "t2.log", "mem/notes.md"):  # only appended to: unaffected unless hit
        if path not in touched and (ws / path).exists():
            assert (target / path).read_bytes() == (ws / path).read_bytes()


def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    jdir, ws, states, records = build(tmp_path, n=12)
    seg = list_segments(jdir)[-1][1]
    for junk in (os.urandom(1), os.urandom(333), MAGIC + os.urandom(40), b"\0" * 4096):
        original = seg.read_bytes()
        seg.write_bytes(original + junk)
        scan = read_journal(jdir)
        assert [r.seq for r in scan] == list(range(1, 13))
        assert [w.kind for w in scan.warnings] == [TORN_TAIL] and scan.warnings[0].seq == 13
        assert scan.stopped_by is None
        target = fresh(tmp_path, f"g{len(junk)}")
        replay_into(target, jdir)
        assert tree(target) == tree(ws)
        seg.write_bytes(original)


def test_garbage_between_records_with_intact_records_after_is_corruption(tmp_path: Path) -> None:
    jdir, ws, _, records = build(tmp_path, n=12)
    seg = list_segments(jdir)[0][1]
    data = seg.read_bytes()
    cut = records[5].offset + records[5].size
    seg.write_bytes(data[:cut] + b"garbage!" * 3 + data[cut:])
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(1, 7))
    assert scan.stopped_by.kind == CORRUPT and scan.stopped_by.lost is None
    lossy = read_journal(jdir, accept_loss=True)  # nothing was lost: the chain still links
    assert [(r.seq, r.after_loss) for r in lossy] == [(s, False) for s in range(1, 13)]
    target = fresh(tmp_path, "t")
    replay_into(target, jdir, accept_loss=True)
    assert tree(target) == tree(ws)


def test_deleted_middle_segment_is_a_gap(tmp_path: Path) -> None:
    jdir, _, states, _ = build(tmp_path, n=40, segment_bytes=700)
    segs = list_segments(jdir)
    assert len(segs) >= 4
    gone_first, gone_path = segs[2]
    next_first = segs[3][0]
    gone_path.unlink()
    for accept_loss in (False, True):
        scan = read_journal(jdir, accept_loss=accept_loss)
        assert [r.seq for r in scan] == list(range(1, gone_first))
        problem = scan.stopped_by
        assert problem.kind == GAP and problem.last_good == gone_first - 1
        assert problem.lost == (gone_first, next_first - 1)
        assert f"records {gone_first}..{next_first - 1}" in problem.message
    target = fresh(tmp_path, "t")
    result = replay_into(target, jdir)
    assert tree(target) == states[gone_first - 1] and result.scan.error().exit_code == 17


def test_duplicated_segment_is_detected(tmp_path: Path) -> None:
    jdir, ws, _, _ = build(tmp_path, n=40, segment_bytes=700)
    segs = list_segments(jdir)
    first, path = segs[1]
    assert segs[2][0] > first + 1
    shutil.copy(path, jdir / segment_name(first + 1))  # sorts right after the original
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(1, segs[2][0]))
    assert scan.stopped_by.kind == DUPLICATE and scan.stopped_by.last_good == segs[2][0] - 1
    lossy = read_journal(jdir, accept_loss=True)  # the copy is skipped, the chain still links
    assert [(r.seq, r.after_loss) for r in lossy] == [(s, False) for s in range(1, 41)]
    assert lossy.problems[0].kind == DUPLICATE and lossy.problems[0].skipped
    (jdir / segment_name(first + 1)).unlink()

    shutil.copy(segs[0][1], jdir / segment_name(10_000))  # a copy after the newest segment
    scan = read_journal(jdir)
    assert len(list(scan)) == 40 and scan.stopped_by.kind == DUPLICATE
    target = fresh(tmp_path, "t")
    replay_into(target, jdir)
    assert tree(target) == tree(ws)


def test_broken_hash_link_stops(tmp_path: Path) -> None:
    jdir, _, states, records = build(tmp_path, n=10)
    seg = list_segments(jdir)[0][1]
    data = bytearray(seg.read_bytes())
    victim = records[6]
    forged = _forge(victim.seq, victim.ts_ns, b"\x01" * 32, b'[{"op":"delete","path":"zz"}]', b"")
    data[victim.offset : victim.offset + victim.size] = forged
    seg.write_bytes(bytes(data))
    for accept_loss in (False, True):
        scan = read_journal(jdir, accept_loss=accept_loss)
        assert [r.seq for r in scan] == list(range(1, 7))
        assert scan.stopped_by.kind == BROKEN_LINK and scan.stopped_by.last_good == 6
    target = fresh(tmp_path, "t")
    replay_into(target, jdir)
    assert tree(target) == states[6]


# --- a second implementation: the documented format, byte for byte -----------------


def _forge(seq: int, ts: int, prev: bytes, ops_json: bytes, data: bytes) -> bytes:
    """A record framed from docs/journal.md alone."""
    payload = struct.pack("<QQ32sI", seq, ts, prev, len(ops_json)) + ops_json + data
    head = MAGIC + struct.pack("<I", len(payload))
    digest = blake3.blake3(head + payload).digest()
    return head + payload + digest[:4]


def _frame_of(jdir: Path, seq: int, op: Append) -> tuple[bytes, bytes]:
    last = list(read_journal(jdir))[-1]
    meta = {"op": "append", "path": op.path, "offset": op.offset, "len": len(op.data)}
    frame = _forge(seq, last.ts_ns, last.hash, json.dumps([meta]).encode(), op.data)
    return frame, blake3.blake3(frame[:-4]).digest()


def test_the_documented_format_matches_the_writer(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with Journal(tmp_path / "j", ws, clock=lambda: 1_700_000_000_000_000_000) as journal:
        journal.put("dir/a", b"hello", 0o600)
        with journal.transaction():
            journal.append("dir/a", b" world")
            journal.rename("dir/a", "b")
            journal.mkdir("m")
            journal.delete("dir")
    raw = (tmp_path / "j" / segment_name(1)).read_bytes()
    one = _forge(
        1,
        1_700_000_000_000_000_000,
        ZERO_HASH,
        b'[{"op":"put","path":"dir/a","len":5,"mode":384}]',
        b"hello",
    )
    two = _forge(
        2,
        1_700_000_000_000_000_000,
        blake3.blake3(one[:-4]).digest(),
        b'[{"op":"append","path":"dir/a","offset":5,"len":6},'
        b'{"op":"rename","src":"dir/a","dst":"b"},{"op":"mkdir","path":"m"},'
        b'{"op":"delete","path":"dir"}]',
        b" world",
    )
    assert raw == one + two


def test_forged_record_cannot_write_outside_the_target(tmp_path: Path) -> None:
    jdir, _, states, records = build(tmp_path, n=3)
    outside = tmp_path / "outside"
    outside.mkdir()
    last = records[-1]
    evil_path = "../../outside/pwned"
    ops = json.dumps([{"op": "put", "path": evil_path, "len": 4}]).encode()
    evil = _forge(4, last.ts_ns, last.hash, ops, b"evil")
    good = _forge(
        5, last.ts_ns, blake3.blake3(evil[:-4]).digest(), b'[{"op":"mkdir","path":"ok"}]', b""
    )
    with open(list_segments(jdir)[-1][1], "ab") as f:
        f.write(evil + good)
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == [1, 2, 3]
    assert scan.stopped_by.kind == INVALID and scan.stopped_by.seq == 4
    target = fresh(tmp_path, "t")
    replay_into(target, jdir)
    assert tree(target) == states[3]
    target2 = fresh(tmp_path, "t2")
    result = replay_into(target2, jdir, accept_loss=True)  # skips 4; 5 still links through it
    assert result.last_seq == 5 and (target2 / "ok").is_dir()
    assert os.listdir(outside) == [] and not (tmp_path / "pwned").exists()

    # A record built in memory is checked again by replay itself.
    forged = JournalRecord(1, 0, ZERO_HASH, (Put(evil_path, b"x"),))
    with pytest.raises(JournalError, match="refused"):
        replay([forged], fresh(tmp_path, "t3"))
    # A symlink already in the target is never followed.
    target4 = fresh(tmp_path, "t4")
    (target4 / "link").symlink_to(outside)
    for op in (Put("link/pwned", b"x"), Append("link/pwned", 0, b"x"), Rename("a", "link/p")):
        (target4 / "a").write_bytes(b"a")
        with pytest.raises(ReplayMismatch):
            replay([JournalRecord(1, 0, ZERO_HASH, (op,))], target4)
    assert os.listdir(outside) == []


# --- trimming ------------------------------------------------------------------------


def test_trim_keeps_the_last_five_minutes_and_unshipped_records(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    now = [1_000 * 10**9]

    def clock() -> int:
        return now[0]

    jdir = tmp_path / "j"
    journal = Journal(jdir, ws, segment_bytes=500, clock=clock)
    stamps = {}
    for _ in range(120):
        journal.append("log", os.urandom(100))
        stamps[journal.last_seq] = now[0]
        now[0] += 10 * 10**9  # a record every 10 s: 20 minutes in all
    with pytest.raises(ValueError):
        journal.trim(120, keep_seconds=60)
    before = list_segments(jdir)

    deleted = journal.trim(shipped_seq=50)
    kept = list_segments(jdir)
    assert deleted and len(kept) + len(deleted) == len(before)
    first_kept = kept[0][0]
    assert 45 <= first_kept <= 51  # nothing unshipped was deleted
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(first_kept, 121)) and not scan.problems

    deleted = journal.trim(shipped_seq=120)
    kept = list_segments(jdir)
    cutoff = now[0] - 300 * 10**9
    assert stamps[kept[1][0]] > cutoff  # trimmed as far as allowed, no further
    recent = [s for s, ts in stamps.items() if ts > cutoff]
    assert kept[0][0] <= min(recent)  # the last 5 minutes stay
    now[0] += 3600 * 10**9
    journal.trim(shipped_seq=120)
    assert len(list_segments(jdir)) == 1  # the newest segment always stays
    journal.close()
    with Journal(jdir, ws, clock=clock) as journal:  # a trimmed journal reopens and goes on
        journal.append("log", b"x")
        assert journal.last_seq == 121


# --- threads and the SDK ---------------------------------------------------------------


def test_concurrent_writers_get_contiguous_sequence_numbers(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    jdir = tmp_path / "j"
    journal = Journal(jdir, ws, segment_bytes=8192)
    per_thread = 40

    def work(t: int) -> None:
        for i in range(per_thread):
            journal.append(f"t{t}.log", b"%d:%d\n" % (t, i))
            journal.append("shared.log", b"x" * 7)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    scan = read_journal(jdir)
    assert [r.seq for r in scan] == list(range(1, 8 * per_thread * 2 + 1))
    assert not scan.problems and not scan.warnings
    for t in range(8):
        expected = b"".join(b"%d:%d\n" % (t, i) for i in range(per_thread))
        assert (ws / f"t{t}.log").read_bytes() == expected
    assert (ws / "shared.log").stat().st_size == 8 * per_thread * 7
    target = fresh(tmp_path, "t")
    replay_into(target, jdir)
    assert tree(target) == tree(ws)


def test_flush_reports_the_journal_seq(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    journal = Journal(tmp_path / "j", ws)
    sock_path = tmp_path / "agent.sock"
    server = ControlServer(sock_path, journal_seq=lambda: journal.last_seq, flush_interval=None)
    server.start()
    try:
        journal.append("log", b"a")
        journal.append("log", b"b")
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(sock_path))
            conn.sendall(b'{"id":1,"op":"hello","protocol":1}\n{"id":2,"op":"flush"}\n')
            buf = b""
            while buf.count(b"\n") < 2:
                buf += conn.recv(4096)
        hello, flush = (json.loads(line) for line in buf.splitlines())
        assert "journal" in hello["capabilities"]
        assert flush["ok"] and flush["journal_seq"] == 2
    finally:
        server.stop()
        journal.close()


# --- overhead (printed, not asserted) ----------------------------------------------------


def test_measure_write_overhead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    payload = os.urandom(200)
    n = 1500

    def percentiles(samples: list[float]) -> tuple[float, float]:
        samples.sort()
        return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6

    direct, direct_sync, journaled = [], [], []
    path = ws / "direct.log"
    for _ in range(n):
        t0 = time.perf_counter()
        with open(path, "ab") as f:
            f.write(payload)
        direct.append(time.perf_counter() - t0)
    for _ in range(n):
        t0 = time.perf_counter()
        with open(path, "ab") as f:
            f.write(payload)
            f.flush()
            os.fdatasync(f.fileno())
        direct_sync.append(time.perf_counter() - t0)
    with Journal(tmp_path / "j", ws) as journal:
        for _ in range(n):
            t0 = time.perf_counter()
            journal.append("journaled.log", payload)
            journaled.append(time.perf_counter() - t0)
        stats = journal.stats
    assert stats["records"] == n
    rows = [
        ("direct write", direct),
        ("direct write+fdatasync", direct_sync),
        ("journal.append", journaled),
    ]
    with capsys.disabled():
        print(f"\njournal overhead, {n} appends of 200 B:")
        for label, samples in rows:
            p50, p99 = percentiles(samples)
            print(f"  {label:<24} p50 {p50:8.1f} us   p99 {p99:8.1f} us")
