"""Freeze and hooks against real processes and real signals.

The target is a process group of two Python processes, each bumping a counter
file every 5 ms; "frozen" means neither counter moves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cleancut.errors import CaptureFailed, ExitCode, UsageError
from cleancut.hot.freeze import freeze
from cleancut.hot.hooks import HookResult, run_hook

COUNTER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    path = sys.argv[1]
    if len(sys.argv) > 2:  # the leader starts a second counter in its own group
        subprocess.Popen([sys.executable, "-c", CODE, sys.argv[2]])
    n = 0
    while True:
        n += 1
        with open(path + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(path + ".tmp", path)
        time.sleep(0.005)
    """
)
# The child runs the same loop; pass the source along so it needs no file.
COUNTER_SRC = f"CODE = {COUNTER!r}\n" + COUNTER

HOLDER = textwrap.dedent(
    """
    import sys, time
    from cleancut.hot.freeze import freeze
    with freeze(int(sys.argv[1]), float(sys.argv[2])):
        print("frozen", flush=True)
        time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] not in (b"Z", b"X")


def _kill(proc: subprocess.Popen) -> None:
    """Kill a process started in its own session, with its whole group, and reap it."""
    for sig in (signal.SIGKILL, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    proc.wait(timeout=5)


@dataclass
class Target:
    proc: subprocess.Popen
    counters: tuple[Path, Path]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self) -> tuple[int, int]:
        return tuple(int(p.read_text() or 0) for p in self.counters)

    def wait_advancing(self, within: float) -> float:
        """Seconds until both counters move, or fail after `within`."""
        start = time.monotonic()
        first = self.read()
        while time.monotonic() - start < within:
            time.sleep(0.02)
            now = self.read()
            if all(b > a for a, b in zip(first, now, strict=True)):
                return time.monotonic() - start
        raise AssertionError(f"counters did not advance within {within}s: {first} -> {now}")

    def assert_still(self, gap: float = 0.2) -> None:
        a = self.read()
        time.sleep(gap)
        b = self.read()
        assert a == b, f"counters moved while frozen: {a} -> {b}"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    counters = (tmp_path / "leader", tmp_path / "child")
    proc = subprocess.Popen(
        [sys.executable, "-c", COUNTER_SRC, str(counters[0]), str(counters[1])],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not all(p.exists() for p in counters):
            assert time.monotonic() < deadline, "the target did not start"
            time.sleep(0.01)
        t = Target(proc, counters)
        t.wait_advancing(5)
        yield t
    finally:
        _kill(proc)


@pytest.fixture
def spawn() -> Iterator:
    """Start processes in their own sessions; kill every one of them afterwards."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(args, start_new_session=True, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _kill(proc)


def _watchdogs_for(pgid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cleancut.hot.watchdog" in argv and str(pgid).encode() in argv and _alive(int(name)):
            found.append(int(name))
    return found


def _wait_no_watchdog(pgid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while _watchdogs_for(pgid):
        assert time.monotonic() < deadline, "the watchdog outlived its freeze"
        time.sleep(0.02)


# -- freeze ------------------------------------------------------------------


def test_freeze_stops_the_whole_group_and_resumes_it(target: Target) -> None:
    with freeze(target.pid, watchdog_s=30.0) as frozen:
        assert frozen.pgid == target.pid
        assert target.pid in frozen.pids and len(frozen.pids) == 2
        assert frozen.stop_ms < 2000
        assert _watchdogs_for(frozen.pgid), "no watchdog while frozen"
        target.assert_still()
    target.wait_advancing(10.0)
    _wait_no_watchdog(target.pid)


def test_an_error_inside_the_with_still_thaws(target: Target) -> None:
    with pytest.raises(RuntimeError, match="capture broke"), freeze(target.pid, watchdog_s=30.0):
        target.assert_still(0.05)
        raise RuntimeError("capture broke")
    target.wait_advancing(10.0)


def test_a_sigkilled_holder_leaves_the_agent_running(target: Target, spawn) -> None:
    holder = spawn([sys.executable, "-c", HOLDER, str(target.pid), "60"], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"frozen\n"
    target.assert_still(0.1)
    os.killpg(holder.pid, signal.SIGKILL)  # the holder and its whole group; no finally runs
    target.wait_advancing(10.0)  # thawed by the watchdog, with no one left to ask it
    _wait_no_watchdog(target.pid)


def test_a_hung_holder_is_overruled_by_the_watchdog_deadline(target: Target, spawn) -> None:
    holder = spawn(
        [sys.executable, "-c", HOLDER, str(target.pid), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert holder.stdout.readline() == b"frozen\n"
    os.kill(holder.pid, signal.SIGSTOP)  # alive but hung: the pipe never reaches EOF
    target.assert_still(0.5)  # within the 3 s watchdog deadline: still frozen
    target.wait_advancing(3 + 10.0)  # then the deadline thaws it
    _kill(holder)
    assert b"thawed process group" in holder.stderr.read()


def test_a_watchdog_thaw_during_capture_fails_the_capture(target: Target) -> None:
    thaw_during_capture = pytest.raises(CaptureFailed, match="not frozen throughout")
    with thaw_during_capture as err, freeze(target.pid, watchdog_s=0.3):
        target.wait_advancing(30.0)  # the capture lasts until the watchdog has thawed it
    assert err.value.exit_code == ExitCode.CAPTURE_FAILED
    target.wait_advancing(10.0)


def test_freeze_refuses_a_missing_pid() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    missing = pid_max + 1
    with pytest.raises(UsageError, match=f"--freeze {missing}: no such process"):
        freeze(missing, watchdog_s=5.0).__enter__()


def test_freeze_refuses_cleancuts_own_group() -> None:
    with pytest.raises(UsageError, match="own process group"):
        freeze(os.getpid(), watchdog_s=5.0).__enter__()


# -- hooks -------------------------------------------------------------------


def test_hook_success_sees_its_environment() -> None:
    result = run_hook(
        "pre",
        'echo "phase=$CLEANCUT_PHASE source=$CLEANCUT_SOURCE"; echo to-stderr >&2',
        timeout=10.0,
        env={"CLEANCUT_SOURCE": "/srv/agent"},
    )
    assert isinstance(result, HookResult)
    assert (result.phase, result.returncode) == ("pre", 0)
    assert "phase=pre source=/srv/agent" in result.output_tail
    assert "to-stderr" in result.output_tail
    assert 0 <= result.duration_s < 10


def test_hook_output_keeps_only_the_tail() -> None:
    result = run_hook("post", "seq 1 5000; echo the-end", timeout=10.0)
    assert len(result.output_tail) <= 2048
    assert result.output_tail.endswith("the-end\n")
    assert "\n1\n" not in result.output_tail


def test_hook_nonzero_exit_names_code_and_last_line() -> None:
    with pytest.raises(CaptureFailed) as err:
        run_hook("pre", 'echo first; echo "agent refused: busy" >&2; echo; exit 3', timeout=10.0)
    assert str(err.value) == "pre hook exited 3: agent refused: busy"
    assert err.value.exit_code == ExitCode.CAPTURE_FAILED
    assert err.value.result.returncode == 3


def test_hook_that_cannot_start() -> None:
    with pytest.raises(CaptureFailed, match="pre hook could not start"):
        run_hook("pre", "echo a\0b", timeout=5.0)


def test_hook_timeout_kills_its_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    start = time.monotonic()
    with pytest.raises(CaptureFailed) as err:
        run_hook("post", f"sleep 30 & echo $! > {pidfile}; sleep 30", timeout=0.5)
    assert str(err.value) == "post hook timed out after 0.5s"
    assert time.monotonic() - start < 0.5 + 3
    assert not _alive(int(pidfile.read_text()))


def test_hook_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    start = time.monotonic()
    with pytest.raises(CaptureFailed, match="timed out after 0.3s"):
        run_hook("pre", f"trap '' TERM; sleep 30 & echo $! > {pidfile}; sleep 30", timeout=0.3)
    assert time.monotonic() - start < 60  # ended by the timeout and the kill, not a hang
    assert not _alive(int(pidfile.read_text()))


def test_ctrl_c_during_a_hook_kills_its_group(tmp_path: Path, spawn) -> None:
    pidfile = tmp_path / "grandchild"
    code = textwrap.dedent(
        f"""
        import signal
        from cleancut.hot.hooks import run_hook
        # A shell's background job starts with SIGINT ignored; act like a terminal's foreground.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            run_hook("pre", "sleep 30 & echo $! > {pidfile}; sleep 30", timeout=60.0)
        except KeyboardInterrupt:
            raise SystemExit(130)
        """
    )
    runner = spawn([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the hook did not start"
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())
    hook_group = os.getpgid(grandchild)
    try:
        os.kill(runner.pid, signal.SIGINT)
        assert runner.wait(timeout=5) == 130
        assert not _alive(grandchild)
    finally:  # the hook is in its own session: killing the runner does not reach it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hook_group, signal.SIGKILL)
