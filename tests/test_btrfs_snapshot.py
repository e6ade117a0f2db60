"""Hot backups whose in-pause work is one read-only btrfs snapshot (hot/fs_snapshot.py).

Each test makes its own btrfs filesystem: a sparse image, mkfs.btrfs, a loop mount
(`make test` installs btrfs-progs; the tests run as root, as CI does). The simulated
agent runs flat out on it, and every restored snapshot goes through the invariant
checker. A backup killed after its snapshot leaves it behind; the next run removes
it, and never a snapshot that cleancut did not take.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI
from loopfs import loop_mounted, run
from test_hot_backup import hot, restore, start_agent, stop_agent, violations

from cleancut.hot import btrfs
from cleancut.hot.fs_snapshot import PLACE, RECORD
from cleancut.sdk.server import ControlServer


@pytest.fixture
def fs() -> Iterator[Path]:
    """A freshly made btrfs filesystem, loop-mounted at a short path (sockets live on it)."""
    assert shutil.which("btrfs"), "btrfs-progs is missing: `make test` installs it"
    with loop_mounted("btrfs") as mnt:
        yield mnt


def _subvolume(path: Path) -> Path:
    made = run("btrfs", "subvolume", "create", str(path))
    assert made.returncode == 0, made.stderr
    return path


def _subvolumes_in(directory: Path) -> list[str]:
    found = []
    for entry in sorted(os.listdir(directory)):
        fd = os.open(directory / entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if btrfs.is_subvolume_root(fd):
                found.append(entry)
        finally:
            os.close(fd)
    return found


def test_snapshot_backups_under_load_restore_consistent(
    repo_cli: CLI, fs: Path, tmp_path: Path
) -> None:
    _subvolume(fs / "agent")
    staging = fs / "staging"
    agent = start_agent(fs, "--async-fraction", "0.5")
    try:
        summaries = []
        for _ in range(5):
            summary = hot(repo_cli, agent, "--staging", str(staging))
            capture: Any = summary["capture"]
            assert summary["consistency"] == "quiesced", summary.get("miss_reason")
            assert capture["strategy"]["capture"] == "btrfs-snapshot", capture["strategy"]
            assert capture["horizon_mode"] == "wait"
            # The pause held one snapshot; the staging pass read it after resume.
            assert "stage" in capture["steps_ms"]
            assert _subvolumes_in(staging / PLACE) == [], "a snapshot outlived its backup"
            assert not (staging / RECORD).exists()
            summaries.append(summary)
        assert agent.proc.poll() is None
        for i, summary in enumerate(summaries):
            target = tmp_path / f"restored-{i}"
            restore(repo_cli, str(summary["snapshot_id"]), target)
            found = violations(agent, target, summary)
            assert found == [], f"snapshot {i} ({summary['kind']}): {found[:5]}"
    finally:
        stop_agent(agent)


def test_a_directory_that_is_not_a_subvolume_is_staged_in_the_pause(
    repo_cli: CLI, fs: Path, tmp_path: Path
) -> None:
    (fs / "plain").mkdir()  # on btrfs, but inside the top-level subvolume
    agent = start_agent(fs / "plain")
    try:
        summary = hot(repo_cli, agent, "--staging", str(fs / "staging"))
        strategy = summary["capture"]["strategy"]  # type: ignore[index]
        assert summary["consistency"] == "quiesced"
        assert strategy["capture"] == "staging-scan"
        assert "not a subvolume" in strategy["capture_why"], strategy
        target = tmp_path / "restored"
        restore(repo_cli, str(summary["snapshot_id"]), target)
        assert violations(agent, target, summary) == []
    finally:
        stop_agent(agent)


def test_staging_on_another_filesystem_falls_back_and_says_why(
    repo_cli: CLI, fs: Path, tmp_path: Path
) -> None:
    workspace = _subvolume(fs / "ws")
    agent = CounterAgent(str(fs / "agent.sock"), workspace)
    agent.start()
    agent.worker.start()
    try:
        summary = json.loads(repo_cli.ok(
            "backup", str(workspace), "--agent", f"unix:{agent.socket_path}", "--json",
            "--staging", str(tmp_path / "staging"), "--quiesce-timeout", "10s",
        ).out)
    finally:
        agent.stopping.set()
        agent.stop()
    strategy = summary["capture"]["strategy"]
    assert summary["consistency"] == "quiesced"
    assert strategy["capture"] == "staging-scan"
    assert "staging directory is not on the source's btrfs filesystem" in strategy["capture_why"]
    assert not (tmp_path / "staging" / PLACE).exists()  # made only when a snapshot is taken


class CounterAgent(ControlServer):
    """An SDK agent whose workspace is a counter file rewritten by a worker; when a
    backup process is named in `victim`, it is SIGKILLed on its `resume`: after its
    snapshot, before it could delete it."""

    def __init__(self, sock: str, workspace: Path) -> None:
        super().__init__(sock, agent="killer", flush_interval=None)
        self.workspace = workspace
        self.victim: subprocess.Popen[str] | None = None
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, daemon=True)

    def _work(self) -> None:
        n = 0
        while not self.stopping.is_set():
            with self.turn():
                n += 1
                tmp = self.workspace / "counter.json.tmp"
                tmp.write_text(json.dumps({"n": n}))
                os.replace(tmp, self.workspace / "counter.json")
            time.sleep(0.002)

    def _handle(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "resume" and self.victim is not None:
            self.victim.send_signal(signal.SIGKILL)
            self.victim.wait()
            self.victim = None
        return super()._handle(conn, request)


def test_a_snapshot_left_by_a_killed_backup_is_removed_next_run_and_no_other(
    repo_cli: CLI, fs: Path
) -> None:
    workspace = _subvolume(fs / "ws")
    staging = fs / "staging"
    agent = CounterAgent(str(fs / "agent.sock"), workspace)
    agent.start()
    agent.worker.start()
    args = ("backup", str(workspace), "--name", "ws", "--agent", f"unix:{agent.socket_path}",
            "--staging", str(staging), "--json", "--quiesce-timeout", "10s")
    try:
        agent.victim = subprocess.Popen(
            repo_cli.command(*args), env=repo_cli.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        assert agent.victim.wait(120) == -signal.SIGKILL
        left = _subvolumes_in(staging / PLACE)
        assert len(left) == 1 and (staging / RECORD).exists(), left
        # A snapshot of the same workspace that cleancut did not take, beside its own.
        theirs = run("btrfs", "subvolume", "snapshot", "-r", str(workspace),
                      str(staging / PLACE / "theirs"))
        assert theirs.returncode == 0, theirs.stderr

        # A leftover that cannot be deleted (its directory immutable: EPERM even for root)
        # stops snapshots until it can be: none piles up beside it.
        assert run("chattr", "+i", str(staging / PLACE)).returncode == 0
        try:
            blocked = json.loads(repo_cli.ok(*args).out)["capture"]["strategy"]
        finally:
            run("chattr", "-i", str(staging / PLACE))
        assert blocked["capture"] == "staging-scan"
        assert "cannot be deleted" in blocked["capture_why"]
        assert _subvolumes_in(staging / PLACE) == sorted([left[0], "theirs"])
        assert (staging / RECORD).exists()

        summary = json.loads(repo_cli.ok(*args).out)
        strategy = summary["capture"]["strategy"]
        assert summary["consistency"] == "quiesced"
        assert strategy["capture"] == "btrfs-snapshot"
        assert strategy["notes"] == [
            f"removed {PLACE}/{left[0]}, a snapshot left by an interrupted run"
        ]
        assert _subvolumes_in(staging / PLACE) == ["theirs"]
        assert not (staging / RECORD).exists()
        assert json.loads(repo_cli.ok(*args).out)["capture"]["strategy"]["notes"] == []
        assert _subvolumes_in(staging / PLACE) == ["theirs"]
    finally:
        agent.stopping.set()
        agent.stop()


def test_a_snapshot_refused_in_the_pause_is_staged_the_old_way(
    repo_cli: CLI, fs: Path, tmp_path: Path
) -> None:
    """The snapshot ioctl fails inside the pause (EPERM: its directory is immutable):
    that pause stages the workspace itself, the snapshot stays quiesced, and `why` says."""
    workspace = _subvolume(fs / "ws")
    staging = fs / "staging"
    agent = CounterAgent(str(fs / "agent.sock"), workspace)
    agent.start()
    agent.worker.start()
    args = ("backup", str(workspace), "--name", "ws", "--agent", f"unix:{agent.socket_path}",
            "--staging", str(staging), "--json", "--quiesce-timeout", "10s")
    try:
        first = json.loads(repo_cli.ok(*args).out)
        assert first["capture"]["strategy"]["capture"] == "btrfs-snapshot"
        assert run("chattr", "+i", str(staging / PLACE)).returncode == 0
        try:
            summary = json.loads(repo_cli.ok(*args).out)
        finally:
            run("chattr", "-i", str(staging / PLACE))
        strategy = summary["capture"]["strategy"]
        assert summary["consistency"] == "quiesced"
        assert strategy["capture"] == "staging-scan"
        assert "snapshot failed in the pause" in strategy["capture_why"], strategy
        assert not (staging / RECORD).exists() and _subvolumes_in(staging / PLACE) == []
    finally:
        agent.stopping.set()
        agent.stop()
    target = tmp_path / "restored"
    repo_cli.ok("restore", str(summary["snapshot_id"]), "--target", str(target))
    assert json.loads((target / "counter.json").read_text())["n"] >= 1
