"""Tail blobs: a file that grew keeps the blobs of its unchanged prefix.

An agent's transcripts only grow. Chunked again from the start, a grown file
deduplicates every blob but its last, which now ends later and is stored again
whole: up to the maximum chunk size for a line of text. An incremental instead
checks the previous version's blobs against the file, in order (each blob's
byte range read and hashed with the keyed BLAKE3, so the check is exact, never
a guess from metadata), keeps the leading blobs that still match, and chunks
only from the end of the last one kept. A file that only grew keeps all of
them and stores just its new tail. A file rewritten in place (a database)
stops matching at its first changed blob and is chunked from there, which is
where content-defined chunking would have re-synchronised anyway.

A tail boundary sits where the file ended, not where the content says, so
repeated appends would leave a string of small blobs. Two rules bound that:
a kept last blob smaller than `MERGE_BELOW` is read again together with the
new tail (so an append stores at most `MERGE_BELOW` bytes more than it
added), and a full backup chunks a file again from the start when its blob
list has a blob smaller than the minimum chunk size anywhere but at its end
(which content-defined chunking never makes): fulls restore content-defined
boundaries and with them deduplication across files.

The repository format does not change: a tail blob is a data blob like any
other, and a file's content is still its ordered list of blob IDs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cleancut.repository.config import ChunkerParams

# A kept last blob smaller than this is re-read and stored again with the new tail.
MERGE_BELOW = 8 << 10


@dataclass(frozen=True)
class Prefix:
    """The leading blobs of the previous version that the file still holds."""

    ids: list[str]  # hex blob IDs, in file order
    length: int  # bytes they cover: chunking resumes at this offset


def blob_lengths(content: list[str], raw_length: Callable[[bytes], int | None]) -> list[int] | None:
    """Plaintext length of each blob of a content list, or None if one is not indexed."""
    lengths = []
    for blob in content:
        length = raw_length(bytes.fromhex(blob))
        if length is None:
            return None
        lengths.append(length)
    return lengths


def matching_prefix(
    fd: int,
    content: list[str],
    lengths: list[int],
    blob_id: Callable[[bytes], bytes],
    file_size: int,
) -> Prefix:
    """The leading blobs of `content` whose bytes the open file still holds, by hash."""
    kept: list[str] = []
    offset = 0
    for blob, length in zip(content, lengths, strict=True):
        if offset + length > file_size:
            break
        data = _pread_exact(fd, length, offset)
        if len(data) != length or blob_id(data).hex() != blob:
            break
        kept.append(blob)
        offset += length
    if kept and len(kept) == len(content) and lengths[len(kept) - 1] < MERGE_BELOW:
        # A small tail of an earlier append: stored again with this one, not beside it.
        offset -= lengths[len(kept) - 1]
        kept.pop()
    return Prefix(kept, offset)


def content_defined(lengths: list[int], params: ChunkerParams) -> bool:
    """Whether a blob list could have come from chunking the whole file: every blob but
    the last is at least the minimum chunk size."""
    return all(length >= params.min_size for length in lengths[:-1])


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`; fewer only at the end of the file."""
    parts = []
    got = 0
    while got < size:
        data = os.pread(fd, size - got, offset + got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)
