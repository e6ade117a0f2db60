"""The freeze watchdog: a tiny separate process that thaws a stopped process group.

`freeze` stops an agent's process group with SIGSTOP. If the backup process
then dies (`kill -9`, out-of-memory killer, a crash) nothing in it can run a
`finally`, and a thread would die with it: the agent would stay stopped until a
human noticed. So the SIGCONT that always follows must not depend on the backup
process being alive. This watchdog is started before the SIGSTOP, in its own
session (a Ctrl-C or a kill of the backup's process group does not reach it),
and holds the read end of a pipe whose only write end the backup holds. It
sends SIGCONT to the group when either

* the pipe reaches end of file: the backup finished and closed it, or died and
  the kernel closed it; or
* the deadline passes: the backup is alive but hung (stopped, deadlocked, stuck
  in I/O), and a frozen agent is worse than a snapshot that failed.

Usage: python -m cleancut.hot.watchdog PGID SECONDS

It prints "ready" once it is watching. When it had to thaw the group before
the backup said it was done (deadline or SIGTERM) it prints "thawed" on stdout,
so the backup can refuse to label its capture `frozen`, and a line on stderr
for the operator. It always exits 0.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time


def _thaw(pgid: int) -> None:
    # OSError: the group is gone, or never was ours to signal: nothing to thaw.
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGCONT)


def _say(fd: int, line: str) -> None:
    # The backup may be dead and the pipe or terminal closed; the thaw has
    # already happened, so a failed report must not turn into a traceback.
    # Unbuffered on purpose: nothing is left to fail again at exit.
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode())


def _thawed_early(pgid: int, why: str) -> None:
    _thaw(pgid)
    _say(1, "thawed")
    _say(2, f"cleancut watchdog: thawed process group {pgid} {why}")


def _on_sigterm(pgid: int) -> None:
    try:
        _thawed_early(pgid, "because the watchdog was sent SIGTERM")
    finally:
        os._exit(0)


def watch(pgid: int, seconds: float) -> None:
    """Wait for end of file on stdin or the deadline, then SIGCONT the group."""
    # Ctrl-C and hang-ups are for the backup; this process must outlive it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Whoever terminates the watchdog would otherwise leave the group stopped.
    signal.signal(signal.SIGTERM, lambda *_: _on_sigterm(pgid))
    os.chdir("/")  # hold no mount point busy
    _say(1, "ready")
    deadline = time.monotonic() + seconds
    stdin = sys.stdin.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _thawed_early(pgid, f"after {seconds:g}s: the backup did not finish in time")
            return
        readable, _, _ = select.select([stdin], [], [], remaining)
        if readable and not os.read(stdin, 4096):
            _thaw(pgid)  # end of file: the backup is done or dead
            return


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m cleancut.hot.watchdog PGID SECONDS", file=sys.stderr)
        return 2
    watch(int(argv[0]), float(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
