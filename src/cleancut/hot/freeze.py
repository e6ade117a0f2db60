"""Freeze: stop an agent's whole process group for a crash-consistent capture.

An agent that cannot speak the control protocol cannot be asked to quiesce.
What can still be had is a *crash-consistent* capture: with every process of
the agent stopped by SIGSTOP, nothing changes its files while they are read, so
the snapshot is what a power cut at that instant would have left on disk. The
agent's own recovery (the one it needs after a crash anyway) handles the rest.
Such a snapshot is labelled `frozen`, never `quiesced`.

Stopping the whole group, not one pid, matters: an agent is usually a tree of
processes (workers, tool subprocesses) that all write to its workspace.

A stopped agent is an outage, so the SIGCONT is guaranteed three ways:

* the `finally` of `freeze` sends it whatever happens in the `with` body;
* a watchdog process (see `watchdog.py`), started before the SIGSTOP, sends it
  when the backup process dies: a SIGKILLed process runs no `finally`, and a
  watchdog *thread* would die with it;
* the same watchdog sends it when its deadline passes, in case the backup is
  alive but hung.

If the watchdog had to thaw the group before the capture finished, the capture
was not frozen for its whole duration, and `freeze` raises CaptureFailed
instead of letting the snapshot be labelled `frozen`.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cleancut.childenv import child_env
from cleancut.errors import CaptureFailed, UsageError

STOP_WAIT_S = 2.0  # how long every process of the group gets to reach the stopped state
WATCHDOG_START_S = 10.0  # how long the watchdog gets to start and say "ready"
WATCHDOG_EXIT_S = 5.0  # how long the watchdog gets to exit once told we are done

_STOPPED = {"T", "t"}  # stopped by a signal, or stopped under a tracer
_DEAD = {"Z", "X"}  # a zombie or a dying task writes nothing


@dataclass(frozen=True)
class FreezeInfo:
    """What was frozen: the group, its live processes, and how long stopping took."""

    pgid: int
    pids: tuple[int, ...]
    stop_ms: float


def _stat(path: str) -> tuple[str, int] | None:
    """(state, pgrp) from a /proc .../stat file, or None if the task is gone."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ") ", so
    # split after the last one: "pid (comm) state ppid pgrp ..."
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def _task_states(pid: int) -> list[str]:
    """The state of every thread of a process: a stop is not done until all have stopped."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    states = []
    for tid in tids:
        st = _stat(f"/proc/{pid}/task/{tid}/stat")
        if st is not None:
            states.append(st[0])
    return states


def group_members(pgid: int) -> dict[int, list[str]]:
    """The live processes whose process group is `pgid`, each with its threads' states.

    Found by scanning /proc, because no system call lists a process group.
    Zombies are left out: they are dead, whether or not anyone reaps them.
    """
    members: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(f"/proc/{name}/stat")
        if st is None or st[1] != pgid:
            continue
        live = [s for s in _task_states(int(name)) if s not in _DEAD]
        if live:
            members[int(name)] = live
    return members


def _wait_stopped(pid: int, pgid: int, timeout: float) -> tuple[int, ...]:
    """Wait until every thread of every process in the group is stopped."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        members = group_members(pgid)
        running = sorted(p for p, states in members.items() if not _STOPPED.issuperset(states))
        if not running:
            return tuple(sorted(members))
        if time.monotonic() >= deadline:
            shown = ", ".join(map(str, running[:5])) + (", ..." if len(running) > 5 else "")
            raise CaptureFailed(
                f"--freeze {pid}: {len(running)} of {len(members)} processes in group {pgid} "
                f"did not stop within {timeout:g}s (pids {shown}; stuck in I/O, or not ours "
                "to signal); the group was resumed"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _start_watchdog(pgid: int, watchdog_s: float) -> subprocess.Popen:
    """Start the watchdog in its own session and wait until it is watching.

    Its stdin is a pipe whose write end only this process holds (Python makes
    descriptors non-inheritable), so when this process exits or is killed the
    watchdog reads end of file. Its stderr is ours, so its one line about a
    late thaw reaches the operator. It gets our environment without secrets
    (child_env): it needs only the interpreter's own variables to import cleancut.
    """
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cleancut.hot.watchdog", str(pgid), repr(watchdog_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            env=child_env(),
        )
    except OSError as e:
        raise CaptureFailed(f"--freeze: could not start the watchdog: {e.strerror or e}") from e
    try:
        line = b""
        deadline = time.monotonic() + WATCHDOG_START_S
        assert proc.stdout is not None  # stdout=PIPE
        fd = proc.stdout.fileno()
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 64)  # unbuffered: leave anything after "ready" in the pipe
                if not chunk:
                    break
                line += chunk
        if line != b"ready\n":
            raise CaptureFailed("--freeze: the watchdog did not start; the agent was not stopped")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _stop_watchdog(proc: subprocess.Popen) -> bool:
    """Tell the watchdog we are done (end of file) and reap it. True if it thawed early."""
    try:
        out, _ = proc.communicate(timeout=WATCHDOG_EXIT_S)  # closes its stdin first
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return b"thawed" in out


def _thaw(pgid: int) -> None:
    # ProcessLookupError: the whole group exited while stopped (someone SIGKILLed
    # it): there is nothing left to resume.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)


@contextmanager
def freeze(pid: int, watchdog_s: float) -> Iterator[FreezeInfo]:
    """Stop the process group of `pid` for the body of the `with`; always resume it.

    Raises UsageError when the pid does not exist or shares cleancut's own
    process group (stopping it would stop cleancut too), CaptureFailed when
    the group cannot be signalled or stopped, or when the watchdog had to thaw
    it (after `watchdog_s` seconds) before the body finished.
    """
    if pid <= 0:
        raise UsageError(f"--freeze {pid}: not a process id")
    if not (0 < watchdog_s < math.inf):
        raise UsageError(f"--freeze watchdog must be a positive number of seconds: {watchdog_s}")
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        raise UsageError(f"--freeze {pid}: no such process") from None
    except PermissionError:
        raise CaptureFailed(f"--freeze {pid}: not permitted to look up its process group") from None
    if pgid == os.getpgrp():
        raise UsageError(
            f"--freeze {pid}: that process is in cleancut's own process group {pgid}; "
            "stopping it would stop cleancut too (start the agent in its own session)"
        )
    try:
        os.killpg(pgid, 0)  # may we signal it? ask before anything is stopped
    except ProcessLookupError:
        raise UsageError(f"--freeze {pid}: no such process") from None
    except PermissionError:
        raise CaptureFailed(
            f"--freeze {pid}: not permitted to signal process group {pgid} "
            "(run cleancut as the agent's user or as root)"
        ) from None

    watchdog = _start_watchdog(pgid, watchdog_s)
    try:
        started = time.monotonic()
        try:
            os.killpg(pgid, signal.SIGSTOP)
        except ProcessLookupError:
            raise CaptureFailed(f"--freeze {pid}: the process group {pgid} exited") from None
        except PermissionError:
            raise CaptureFailed(
                f"--freeze {pid}: not permitted to stop process group {pgid}"
            ) from None
        pids = _wait_stopped(pid, pgid, STOP_WAIT_S)
        stop_ms = (time.monotonic() - started) * 1000
        yield FreezeInfo(pgid=pgid, pids=pids, stop_ms=stop_ms)
    finally:
        _thaw(pgid)  # first, before anything else can fail
        thawed_early = _stop_watchdog(watchdog)
    # Reached only when nothing above raised: an error in the body wins.
    if thawed_early:
        raise CaptureFailed(
            f"--freeze {pid}: the watchdog resumed the agent after {watchdog_s:g}s, before the "
            "capture finished, so it was not frozen throughout; raise the freeze watchdog timeout"
        )
