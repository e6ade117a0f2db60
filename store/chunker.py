"""Content-defined chunking of a stream, in bounded memory.

FastCDC works on a buffer; a file is read in windows and the last chunk of a
window (whose end is the window's, not the content's) is carried into the
next, so boundaries depend on content only and equal runs of bytes give equal
chunks wherever they sit in a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from fastcdc import fastcdc

from .config import ChunkerParams

WINDOW = 16 << 20


def chunk_stream(stream: BinaryIO, params: ChunkerParams) -> Iterator[bytes]:
    """Yield the chunks of `stream` in order; at most one window plus one chunk in memory."""
    window = max(WINDOW, 2 * params.max_size)
    carry = b""
    while True:
        data = stream.read(window)
        eof = len(data) < window
        buf = carry + data if carry else data
        if not buf:
            return
        view = memoryview(buf)
        if len(buf) <= params.min_size:
            if eof:
                yield buf
                return
            carry = buf
            continue
        chunks = list(
            fastcdc(
                view, min_size=params.min_size, avg_size=params.avg_size, max_size=params.max_size
            )
        )
        if not eof:
            last = chunks.pop()
            carry = bytes(view[last.offset :])
        for c in chunks:
            yield bytes(view[c.offset : c.offset + c.length])
        if eof:
            return


def chunk_bytes(data: bytes, params: ChunkerParams) -> list[bytes]:
    """All chunks of an in-memory buffer (used by tests and small inputs)."""
    import io

    return list(chunk_stream(io.BytesIO(data), params))
