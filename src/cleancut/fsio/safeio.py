"""Temporary files in directories that someone else may write to.

A file written "temp, then rename" needs a temporary name beside its final
one. Derived from the final name (".NAME.suffix", or with a process id) it is
predictable, so another user can plant a hard link, a symlink or a FIFO there
first, and it can be too long or equal to another entry's name. Here every
temporary name is TEMP_PREFIX plus 16 random hex digits (an optional suffix
after them): short whatever the final name's length, unguessable, and never a
name the caller says is taken. It is created with O_CREAT|O_EXCL|O_NOFOLLOW|
O_NONBLOCK relative to an open directory descriptor, so whatever already sits
at the name is never opened, followed, truncated or waited on: the create
fails and another random name is tried. The final rename is relative to the
same descriptor.

(O_TMPFILE followed by linkat would hide the file until it is whole, but
linkat cannot replace an existing name, so a rename from a temporary name is
needed anyway to restore onto an existing file; and O_TMPFILE is not
supported by every filesystem. One mechanism serves every filesystem.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Container
from pathlib import Path

from cleancut.errors import CleancutError

TEMP_PREFIX = ".cc-tmp-"
_ATTEMPTS = 64
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
)


def temp_name(suffix: str = "") -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"


def create_temp(
    dir_fd: int, taken: Container[str] = (), suffix: str = "", mode: int = 0o600
) -> tuple[int, str]:
    """Create a new empty file under a fresh random name in the directory `dir_fd`.

    Returns (descriptor open for writing, name). `taken` holds names that must not be
    used even if they do not exist yet (entries about to be written there).
    """
    for _ in range(_ATTEMPTS):
        name = temp_name(suffix)
        if name in taken:
            continue
        try:
            fd = os.open(name, _CREATE_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            continue
        os.set_blocking(fd, True)
        return fd, name
    raise CleancutError(f"cannot create a temporary file: {_ATTEMPTS} random names all exist")


def unlink_quietly(name: str, dir_fd: int) -> None:
    """Remove a name (the entry itself, never what it points to), if it is there."""
    if dir_fd >= 0:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += n
        view = view[n:]


def replace_file(path: Path, data: bytes, mode: int = 0o600, suffix: str = "") -> None:
    """Write `path` whole or not at all: a random temporary name beside it, fsync, rename
    over it (a symlink or hard link at `path` is replaced, never written through)."""
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd, tmp = create_temp(dir_fd, (path.name,), suffix, mode)
        try:
            try:
                write_all(fd, data)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            unlink_quietly(tmp, dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
