"""The messages between a backup and its chunking worker processes (archiver/pool.py).

Fixed binary layouts, no pickle: a worker only ever parses what its parent sent
it, and the parent parses what its own worker sent, but neither evaluates code
from the other. Little-endian throughout.

Parent to worker, one datagram each on a SOCK_SEQPACKET socket:

    INIT   "I" | encryption key (32) | id key (32) | chunk min, avg, max (u32 each)
               | zstd level (i32) | pack size (u64)
    FILE   "F" | job (u64) | offset (u64) | size hint (u64) | known count (u32)
               | known blob IDs (32 each); the file's descriptor rides along (SCM_RIGHTS)
    QUIT   "Q"

Worker to parent, one message each on a pipe, framed by its length (u32) first:

    BLOB   "B" | job (u64) | pack salt (16) | blob ID (32) | raw length (u32) | sealed box
    KNOWN  "K" | job (u64) | blob ID (32) | raw length (u32)   (no box: already known)
    DONE   "E" | job (u64) | bytes read (u64) | after reading: mtime ns (i64), size (u64)
    FAILED "X" | job (u64) | errno (i32) | message (UTF-8)
    RETIRE "R" | pack salt (16)   (no more blobs under this salt)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct

INIT = struct.Struct("<c32s32sIIIiQ")
FILE = struct.Struct("<cQQQI")
QUIT = b"Q"

BLOB = struct.Struct("<cQ16s32sI")
KNOWN = struct.Struct("<cQ32sI")
DONE = struct.Struct("<cQQqQ")
FAILED = struct.Struct("<cQi")
RETIRE = struct.Struct("<c16s")

ID_LEN = 32
# Known IDs sent with one file: a hint that spares compressing what the repository holds;
# capped so a FILE datagram stays far below a socket's send buffer.
MAX_KNOWN = 2048
MAX_DATAGRAM = FILE.size + MAX_KNOWN * ID_LEN

LENGTH = struct.Struct("<I")
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20  # a whole chunk's box in one write, not sixteen 64 KiB turns


def widen_pipe(fd: int) -> None:
    """Grow a pipe's buffer (best effort: the system's pipe-max-size may refuse)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


def send(fd: int, *parts: bytes | memoryview) -> None:
    """Write one message (its parts back to back) to a pipe."""
    total = sum(len(p) for p in parts)
    views = [memoryview(LENGTH.pack(total)), *(memoryview(p) for p in parts)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def read_exact(fd: int, size: int) -> memoryview | None:
    """`size` bytes from a pipe, or None at its end (a partial message counts as the end:
    the writer died while writing it)."""
    view = memoryview(bytearray(size))
    return view if read_into(fd, view) else None


def read_into(fd: int, view: memoryview) -> bool:
    """Fill `view` from a pipe; False if the pipe ended first."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            return False
        got += n
    return True


def skip(fd: int, size: int, scratch: memoryview) -> bool:
    """Read and drop `size` bytes; False if the pipe ended first."""
    while size:
        step = min(size, len(scratch))
        if not read_into(fd, scratch[:step]):
            return False
        size -= step
    return True
