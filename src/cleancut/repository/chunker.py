"""Content-defined chunking of a stream, in bounded memory and without copies.

FastCDC works on a buffer; a file is read in windows and the last chunk of a
window (whose end is the window's, not the content's) is carried into the
next, so boundaries depend on content only and equal runs of bytes give equal
chunks wherever they sit in a file. Chunks are memoryviews into a window
buffer that is never reused, so they stay valid while workers hash, compress
and encrypt them; the buffer is freed when its last chunk is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from fastcdc import fastcdc

from .config import ChunkerParams

# Read size: large enough that a window holds many chunks, small enough that the
# windows pinned by chunks in flight (archiver/saver.py) stay a small part of the memory.
WINDOW = 8 << 20


def _read_after(fd: int, carry: bytes, size: int) -> tuple[memoryview, bool]:
    """A fresh buffer holding `carry` then up to `size` bytes of the file, and whether
    the file ended. The file's bytes are read into place: no second copy of a window."""
    buf = bytearray(len(carry) + size)
    buf[: len(carry)] = carry
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[len(carry) + got :]])
        if not n:
            break
        got += n
    return view[: len(carry) + got], got < size


def chunk_fd(fd: int, params: ChunkerParams, size_hint: int = 0) -> Iterator[memoryview]:
    """Yield the chunks of an open file, in order, from its current offset."""
    full_window = max(WINDOW, 2 * params.max_size)
    window = size_hint + 1 if 0 <= size_hint < full_window else full_window
    carry = b""
    while True:
        view, eof = _read_after(fd, carry, window)
        if not view:
            return
        if len(view) <= params.min_size and eof:
            yield view
            return
        chunks = list(
            fastcdc(
                view, min_size=params.min_size, avg_size=params.avg_size, max_size=params.max_size
            )
        )
        if not eof:
            last = chunks.pop()
            carry = bytes(view[last.offset :])
        for c in chunks:
            yield view[c.offset : c.offset + c.length]
        if eof:
            return
        window = full_window


def window_buffer(params: ChunkerParams, window: int = WINDOW) -> bytearray:
    """A buffer for `chunk_fd_into`: a full window (at least `window` bytes, never less
    than the largest chunk) after a carried chunk."""
    return bytearray(max(window, params.max_size) + params.max_size)


def chunk_fd_into(fd: int, params: ChunkerParams, buf: bytearray) -> Iterator[memoryview]:
    """The chunks `chunk_fd` yields, each read into the one buffer `buf` (window_buffer):
    a chunk is valid only until the next is asked for. For a consumer that is done with
    each chunk before it asks for the next (a worker process, archiver/worker.py): no
    allocation, zero-filling or page faults per window."""
    view = memoryview(buf)
    window = len(buf) - params.max_size
    carry = 0
    while True:
        got = _read_into(fd, view[carry : carry + window])
        end = carry + got
        eof = got < window
        if not end:
            return
        data = view[:end]
        if end <= params.min_size and eof:
            yield data
            return
        chunks = list(
            fastcdc(
                data, min_size=params.min_size, avg_size=params.avg_size, max_size=params.max_size
            )
        )
        last = None if eof else chunks.pop()
        for c in chunks:
            yield data[c.offset : c.offset + c.length]
        if last is None:
            return
        carry = end - last.offset  # at most max_size: moved to the front, never overlapping
        view[:carry] = view[last.offset : end]


def _read_into(fd: int, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    return got


def chunk_bytes(data: bytes, params: ChunkerParams) -> list[bytes]:
    """All chunks of an in-memory buffer (tests and small inputs)."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        return [bytes(c) for c in chunk_fd(f.fileno(), params, len(data))]
