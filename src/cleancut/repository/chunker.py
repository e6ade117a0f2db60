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

WINDOW = 16 << 20


def _read(fd: int, size: int) -> bytes:
    """Up to `size` bytes; fewer only at the end of the file."""
    data = os.read(fd, size)
    if 0 < len(data) < size:
        parts = [data]
        got = len(data)
        while got < size:
            more = os.read(fd, size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def chunk_fd(fd: int, params: ChunkerParams, size_hint: int = 0) -> Iterator[memoryview]:
    """Yield the chunks of an open file, in order."""
    full_window = max(WINDOW, 2 * params.max_size)
    window = size_hint + 1 if 0 <= size_hint < full_window else full_window
    carry = b""
    while True:
        data = _read(fd, window)
        eof = len(data) < window
        buf = carry + data if carry else data
        if not buf:
            return
        view = memoryview(buf)
        if len(buf) <= params.min_size and eof:
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


def chunk_bytes(data: bytes, params: ChunkerParams) -> list[bytes]:
    """All chunks of an in-memory buffer (tests and small inputs)."""
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        f.seek(0)
        return [bytes(c) for c in chunk_fd(f.fileno(), params, len(data))]
