"""Reading a small file a user names (a password file, a config file): bounded, never blocking.

A path set to /dev/zero would otherwise be read without end, a FIFO would block
the open until a writer came, and a directory or a huge file would fail late or
fill memory. Here the file is opened without blocking (a symlink to it is fine:
pointing a password file at a secrets mount is legitimate), the opened
descriptor must be a regular file, and at most `limit` bytes are accepted.
Every refusal is one UsageError line that names the file.
"""

from __future__ import annotations

import os

from cleancut.errors import UsageError

from .filekind import NotRegular, open_regular

SECRET_LIMIT = 64 << 10  # a passphrase or token file
CONFIG_LIMIT = 1 << 20  # a config file

def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def read_bounded(path: str | os.PathLike[str], label: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or UsageError naming it."""
    try:
        fd = open_regular(path)
    except NotRegular as exc:
        raise UsageError(f"{label} {os.fspath(path)}: is {exc.kind}, not a regular file") from None
    except FileNotFoundError:
        raise UsageError(f"{label} {os.fspath(path)}: not found") from None
    except OSError as exc:
        raise UsageError(f"{label} {os.fspath(path)}: cannot read: {exc.strerror}") from None
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise UsageError(f"{label} {os.fspath(path)}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise UsageError(f"{label} {os.fspath(path)}: larger than {_size(limit)}")
    return b"".join(chunks)
