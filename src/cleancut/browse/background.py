"""`mount --background`: the mount goes on in a child process; the command returns once
it is mounted, or with the child's own failure.

The fork comes first, before the repository is opened: nothing opened yet (no object
store client, no thread) is shared with the child, and the child can still ask for the
passphrase on the terminal while the parent waits. The child signals the parent through
a pipe once the kernel has mounted the filesystem; then it leaves the terminal's session
(setsid) and sends its output to /dev/null (run in the foreground to see the lines about
damaged data). Had the child failed instead, it printed its one line on the shared
stderr and exited with its code, which the parent returns as its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

READY = b"ready"


@dataclass
class Detached:
    """In the parent: the child that serves the mount, and how it started."""

    pid: int
    mounted: bool
    code: int  # the child's exit code when it did not mount; 0 when it did
    mountpoint: str = ""

    @property
    def exit_code(self) -> int:
        return self.code

    def to_json(self) -> dict[str, Any]:
        return {"mountpoint": self.mountpoint, "pid": self.pid, "mounted": self.mounted}


class Child:
    """In the child: tells the parent the mount is ready, then detaches."""

    def __init__(self, write_fd: int) -> None:
        self.write_fd = write_fd

    def ready(self) -> None:
        os.write(self.write_fd, READY)
        os.close(self.write_fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)


def fork() -> Detached | Child:
    """A Detached in the parent once the child mounted (or failed); a Child in the child."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        return Child(write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        said = pipe.read()
    if said == READY:
        return Detached(pid, True, 0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return Detached(pid, False, code if code > 0 else 1)
