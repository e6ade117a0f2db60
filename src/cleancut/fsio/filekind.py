"""What kind of file a mode names, and opening only a regular file, never blocking.

Backup, capture, the journal readers, the local backend and the readers of
password and config files all refuse the same things in place of a file they
expect: a FIFO (a blocking open waits for a writer forever), a device
(/dev/zero reads without end), a socket, a directory, and below a source or in
a journal a symlink. Each says what it found with kind_of(); open_regular()
does the open, the fstat and the refusal once, and the caller turns
NotRegular into its own one-line error.
"""

from __future__ import annotations

import os
import stat

_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a fifo"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISREG, "a regular file"),
)


def kind_of(mode: int) -> str:
    """'a fifo', 'a directory', ...: what a mode is, for an error line."""
    return next((label for test, label in _KINDS if test(mode)), "a special file")


class NotRegular(Exception):
    """Something other than a regular file stands where one was expected."""

    def __init__(self, mode: int) -> None:
        super().__init__(kind_of(mode))
        self.mode = mode
        self.kind = kind_of(mode)


def open_regular(
    path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o600,
    dir_fd: int | None = None,
) -> int:
    """A descriptor of `path` opened with `flags` | O_NONBLOCK | O_CLOEXEC, if it is a
    regular file (back in blocking mode); NotRegular otherwise. OSError from the open
    (FileNotFoundError, ELOOP for O_NOFOLLOW on a symlink, ...) passes through."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        found = os.fstat(fd).st_mode
        if not stat.S_ISREG(found):
            raise NotRegular(found)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
