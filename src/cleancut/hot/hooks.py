"""Hooks: operator commands run before and after a capture (`--pre`, `--post`).

An agent that cannot speak the control protocol may still have its own way
to be made consistent: a signal that makes it checkpoint, a `pause` command,
a database's `FLUSH TABLES WITH READ LOCK` wrapper. The operator names that
way as a pre hook (and its undo as a post hook), and the snapshot is labelled
`hooked`: cleancut cannot vouch for what the command did, only that it ran
and succeeded.

Every hook has a hard budget, like every other step of a hot backup. A hook
runs in its own session, hence its own process group, so that on a timeout
(or a Ctrl-C of the backup) the whole tree it started is killed, not just the
shell: a `sleep` or a daemon started by the hook would otherwise outlive it
and hold the agent in whatever state the hook put it in.

Its output goes to an unlinked temporary file, not a pipe: a hook that leaves
a background process running (which is allowed) must neither make us wait for
end of file nor get SIGPIPE once we stop reading. Only the tail is kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from cleancut.childenv import child_env
from cleancut.errors import CaptureFailed, UsageError

from .freeze import group_members

TAIL_BYTES = 2048  # how much of a hook's output is kept for the log and error line
TERM_GRACE_S = 2.0  # how long a timed-out hook's group gets between SIGTERM and SIGKILL
# How long to wait for SIGKILLed processes to be gone. The wait ends as soon as they are;
# a loaded host can take more than a second to schedule a killed process's exit.
REAP_WAIT_S = 10.0


@dataclass(frozen=True)
class HookResult:
    """A hook that ran to completion with exit status 0."""

    phase: str
    command: str
    returncode: int
    duration_s: float
    output_tail: str



class HookFailed(CaptureFailed):
    """A hook that failed or timed out, with what it did (exit code, time, output tail)."""

    def __init__(self, message: str, result: HookResult) -> None:
        super().__init__(message)
        self.result = result

def _wait_group_gone(pgid: int, deadline: float) -> bool:
    """Wait until no live process is left in the group (zombies count as gone)."""
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the hook's whole process group: SIGTERM, then SIGKILL to what remains.

    The hook's shell is the group leader, so its pid is the group id; the
    kernel does not reuse that id while any member is alive.
    """
    pgid = proc.pid
    deadline = time.monotonic() + TERM_GRACE_S
    # SIGCONT too: a stopped process acts on SIGTERM only once it runs again.
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        # Reap the shell as soon as it exits: unreaped, it would still count as a member.
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    if not _wait_group_gone(pgid, deadline):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(pgid, time.monotonic() + REAP_WAIT_S)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _tail(out) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - TAIL_BYTES))
    return out.read().decode("utf-8", errors="replace")


def _last_line(tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= 200 else line[:197] + "..."


def run_hook(
    phase: str, command: str, timeout: float, env: dict[str, str] | None = None
) -> HookResult:
    """Run `command` with /bin/sh; return its result, or raise CaptureFailed.

    The hook sees our environment without any secret (childenv.py: no
    passphrase, no storage credentials, no tokens) plus `env` and
    CLEANCUT_PHASE=<phase>. Its
    stdin is /dev/null, so a hook that reads input fails instead of waiting
    on the operator's terminal. A nonzero exit, a timeout (after which its
    whole process group is killed) or a command that cannot start raises
    CaptureFailed with one line; the exception's `result` attribute holds a
    HookResult with the output tail when the hook ran. A KeyboardInterrupt
    while the hook runs kills its process group and is re-raised: the hook is
    in its own session, so the terminal's Ctrl-C does not reach it by itself.
    """
    if not timeout > 0:
        raise UsageError(f"{phase} hook timeout must be a positive number of seconds: {timeout}")
    full_env = child_env({**(env or {}), "CLEANCUT_PHASE": phase})
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the command or env
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise CaptureFailed(f"{phase} hook could not start: {reason}") from None
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise HookFailed(
                f"{phase} hook timed out after {timeout:g}s",
                HookResult(phase, command, proc.returncode, timeout, _tail(out)),
            ) from None
        except BaseException:  # KeyboardInterrupt, or any other way out of the wait
            _kill_group(proc)
            raise
        result = HookResult(phase, command, rc, time.monotonic() - started, _tail(out))
    if rc != 0:
        what = f"exited {rc}" if rc > 0 else f"was killed by {_signal_name(-rc)}"
        last = _last_line(result.output_tail)
        raise HookFailed(f"{phase} hook {what}: {last}" if last else f"{phase} hook {what}", result)
    return result
