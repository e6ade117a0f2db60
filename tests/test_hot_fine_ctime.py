"""Fine-grained ctimes (hot/fine_ctime.py, decision 0020): a file written just before its
copy is not copied again inside the pause when the filesystem proves it unchanged, and
every write after a copy is still seen.

Each test makes its own filesystem (a sparse image, mkfs, a loop mount; root needed).
What the probe finds depends on the kernel (multigrain timestamps: Linux 6.13 and later);
the tests hold the stager to whichever answer it gave, and to soundness under both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopfs import loop_mounted

from cleancut.hot.changes import ChangeTracker
from cleancut.hot.stage import Stager


@pytest.fixture
def ext4() -> Iterator[Path]:
    with loop_mounted("ext4", "cc-ctime-") as mnt:
        yield mnt


@pytest.fixture
def btrfs() -> Iterator[Path]:
    with loop_mounted("btrfs", "cc-ctime-") as mnt:
        yield mnt


def _racy_then_capture(
    src: Path, staging: Path, *, named: bool = False
) -> tuple[str, int, dict[str, object]]:
    """A transcript appended to just before the last pass outside the pause copied it (a
    racy copy), and not written since; with `named`, opened for writing and closed, which
    raises an event naming it and changes nothing. What the in-pause capture copies of it.
    Returns the stager's racy rule ("" when ctimes are fine), the files the capture copied
    besides the sibling written to name the directory, and its strategy record."""
    transcript = src / "session.jsonl"
    transcript.write_bytes(b'{"turn": 0}\n' * 50_000)
    stager = Stager(src, staging)
    with stager.lock():
        stager.track()
        stager.prepare()
        with open(transcript, "ab") as f:
            f.write(b'{"turn": 1}\n')
        stager.prepare()  # copies the tail within a tick of the append: a racy copy
        if named:
            open(transcript, "ab").close()  # IN_CLOSE_WRITE, no write
        # Another file of the same directory changes, so the tracked capture visits it
        # (a directory without events is not visited at all).
        (src / "sessions.json").write_bytes(b"{}")
        stats = stager.capture(defer=True)
        stager.finish()
        assert (stager.tree / "session.jsonl").read_bytes() == transcript.read_bytes()
        return stats.ctime_why, stats.files_copied - 1, stats.strategy()


ELSEWHERE = "the staging directory is on another filesystem than the source"


def test_a_racy_copy_no_event_named_since_is_not_copied_again(
    ext4: Path, tmp_path: Path
) -> None:
    src = ext4 / "src"
    src.mkdir()
    why, copied, record = _racy_then_capture(src, tmp_path / "staging")
    assert why == ELSEWHERE  # no multigrain probe: the tracker's word alone
    assert copied == 0
    assert record["racy_rule"] == ELSEWHERE
    assert record["racy_vouched_by_tracker"] == 1


def test_a_racy_copy_an_event_named_since_is_copied_again(ext4: Path, tmp_path: Path) -> None:
    src = ext4 / "src"
    src.mkdir()
    why, copied, record = _racy_then_capture(src, tmp_path / "staging", named=True)
    assert why == ELSEWHERE
    assert copied == 1  # the racy rule: the whole file again
    assert record["racy_vouched_by_tracker"] == 0


def test_fine_ctimes_prove_a_racy_copy_current_where_the_probe_saw_them(ext4: Path) -> None:
    src = ext4 / "src"
    src.mkdir()
    why, copied, record = _racy_then_capture(src, ext4 / "staging", named=True)
    if why == "":  # this kernel stamps a write after a stat with a new, finer ctime
        assert copied == 0
        assert record["racy_rule"] == "not needed: fine-grained ctimes"
    else:
        assert copied == 1, why
        assert record["racy_rule"] == why
    assert not (ext4 / "staging" / ".lock").read_bytes()  # the probe left the lock empty


def test_a_btrfs_source_is_not_probed_for_fine_ctimes(btrfs: Path) -> None:
    src = btrfs / "src"
    src.mkdir()
    why, copied, _ = _racy_then_capture(src, btrfs / "staging", named=True)
    assert why.startswith("the source's filesystem") and "no multigrain ctime" in why
    assert copied == 1


@pytest.mark.parametrize("where", ["same", "other"])
@pytest.mark.parametrize("track", [True, False])
def test_every_write_right_after_a_capture_is_staged(
    ext4: Path, tmp_path: Path, track: bool, where: str
) -> None:
    """Soundness, whichever rule applies: a same-size rewrite, in place, within the tick
    of the capture that read the file, and an append, are both staged by the next pass."""
    src = ext4 / "src"
    src.mkdir()
    target, log = src / "state.json", src / "log.jsonl"
    log.write_bytes(b"x" * 20_000)
    stager = Stager(src, ext4 / "staging" if where == "same" else tmp_path / "staging")
    with stager.lock():
        if track:
            stager.track()
        stager.prepare()
        for i in range(30):
            target.write_bytes(b"A%03d" % i * 64)
            stager.capture(defer=True)
            stager.finish()
            with open(target, "r+b") as f:  # same size, same inode, no sleep
                f.write(b"B%03d" % i * 64)
            with open(log, "ab") as f:
                f.write(b"%d\n" % i)
            stager.capture(defer=True)
            stager.finish()
            assert (stager.tree / "state.json").read_bytes() == target.read_bytes()
            assert (stager.tree / "log.jsonl").read_bytes() == log.read_bytes()
    assert os.path.getsize(log) > 20_000


def test_a_held_tracker_still_reports_every_event_and_names_the_files(tmp_path: Path) -> None:
    """Held around the pause, the tracker's thread leaves events in the kernel's queue;
    take() drains them itself, so nothing is lost, and each event names its file."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    tracker = ChangeTracker(str(src))
    assert tracker.start() is None
    try:
        tracker.take()
        tracker.hold(True)
        (src / "sub" / "a.jsonl").write_bytes(b"x")
        os.chmod(src / "sub", 0o700)
        held = tracker.take()
        tracker.hold(False)
        (src / "b.json").write_bytes(b"y")
        released = tracker.take()
    finally:
        tracker.close()
    assert held.reason is None and released.reason is None
    assert held.dirs == {"", "sub"} and "sub/a.jsonl" in held.names and "sub" in held.names
    assert released.dirs == {""} and released.names == {"b.json"}


def test_an_append_just_before_the_copy_read_it_keeps_the_vouch(
    ext4: Path, tmp_path: Path
) -> None:
    """An append that lands between the pass's start and the copy's read is in the copy:
    its event, taken just before the read, does not withdraw the vouch; one after does."""
    src = ext4 / "src"
    src.mkdir()
    transcript = src / "session.jsonl"
    transcript.write_bytes(b'{"turn": 0}\n' * 50_000)
    stager = Stager(src, tmp_path / "staging")  # another filesystem: the tracker alone
    with stager.lock():
        stager.track()
        stager.prepare()

        def append(rel: str) -> None:
            if rel == "session.jsonl":
                with open(transcript, "ab") as f:
                    f.write(b'{"turn": 1}\n')

        with open(transcript, "ab") as f:
            f.write(b'{"turn": 0.5}\n')
        stager.before_open = append  # after the pass's take, before the copy's read
        stager.prepare()
        stager.before_open = None
        (src / "sessions.json").write_bytes(b"{}")  # so the capture visits the directory
        stats = stager.capture(defer=True)
        stager.finish()
        assert stats.ctime_why == ELSEWHERE
        assert stats.files_copied == 1 and stats.racy_vouched == 1  # sessions.json only
        assert (stager.tree / "session.jsonl").read_bytes() == transcript.read_bytes()
        with open(transcript, "r+b") as f:  # in place, same size: only its event tells
            f.write(b"{")
        stats = stager.capture(defer=True)
        stager.finish()
        assert stats.files_copied == 1  # the transcript, whole (sessions.json is vouched)
        assert (stager.tree / "session.jsonl").read_bytes() == transcript.read_bytes()
