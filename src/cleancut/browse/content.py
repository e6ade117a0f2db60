"""A file's bytes read from its blobs: only the blobs a range needs, through a small cache.

A file node lists its blobs in order. Their plain sizes come from the index (no read
of the repository), so a read at any offset finds the blobs that cover it and fetches
those alone, each verified against its id. Fetched blobs stay in a bounded LRU
(BlobCache, 32 MiB by default), which serves the kernel's sequential reads of one blob
in many small pieces and the blocks of zeros a sparse file repeats. The cache counts
what it fetched from the repository (ReadStats): the mount reports it at unmount.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass

from cleancut.errors import IntegrityError
from cleancut.repository.pack import DATA
from cleancut.repository.repository import Repository
from cleancut.repository.tree import Node

CACHE_BYTES = 32 << 20


@dataclass
class ReadStats:
    blobs_fetched: int = 0  # data blobs read from the repository
    bytes_fetched: int = 0  # their stored (encrypted, compressed) bytes
    cache_hits: int = 0  # reads of a blob the cache already held

    def to_json(self) -> dict[str, int]:
        return {
            "blobs_fetched": self.blobs_fetched,
            "bytes_fetched": self.bytes_fetched,
            "cache_hits": self.cache_hits,
        }


class BlobCache:
    """Data blobs by id, least recently used dropped first past `limit` bytes."""

    def __init__(self, repo: Repository, limit: int = CACHE_BYTES) -> None:
        self.repo = repo
        self.limit = limit
        self.blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self.size = 0
        self.stats = ReadStats()
        self.lock = threading.Lock()

    def get(self, blob_id: bytes) -> bytes:
        with self.lock:
            hit = self.blobs.get(blob_id)
            if hit is not None:
                self.blobs.move_to_end(blob_id)
                self.stats.cache_hits += 1
                return hit
        data = self.repo.load_blob(blob_id, expected_type=DATA)
        stored = self.repo.locate(blob_id).entry.length
        with self.lock:
            self.stats.blobs_fetched += 1
            self.stats.bytes_fetched += stored
            if len(data) <= self.limit and blob_id not in self.blobs:
                self.blobs[blob_id] = data
                self.size += len(data)
                while self.size > self.limit:
                    _, old = self.blobs.popitem(last=False)
                    self.size -= len(old)
        return data


class FileContent:
    """Random access to one file of a snapshot."""

    def __init__(self, repo: Repository, cache: BlobCache, node: Node, what: str) -> None:
        self.cache = cache
        self.node = node
        self.what = what
        self.ids = [bytes.fromhex(b) for b in node.content]
        self.starts: list[int] = []  # each blob's offset in the file
        at = 0
        for blob_id in self.ids:
            self.starts.append(at)
            at += repo.locate(blob_id).entry.raw_length
        if at != node.size:
            raise IntegrityError(
                f"{what}: its blobs hold {at} bytes, its entry says {node.size} (damaged tree)"
            )

    @property
    def size(self) -> int:
        return self.node.size

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer only at the end of the file)."""
        end = min(offset + length, self.node.size)
        if offset >= end:
            return b""
        parts = []
        i = bisect.bisect_right(self.starts, offset) - 1
        while i < len(self.ids) and self.starts[i] < end:
            data = self.cache.get(self.ids[i])
            start = self.starts[i]
            parts.append(data[max(offset - start, 0) : end - start])
            i += 1
        return b"".join(parts)


class ContentStream:
    """A file's bytes from the start, as a readable object (tarfile, a copy to stdout)."""

    def __init__(self, content: FileContent) -> None:
        self.content = content
        self.position = 0

    def read(self, length: int = -1) -> bytes:
        if length < 0:
            length = self.content.size - self.position
        data = self.content.read(self.position, length)
        self.position += len(data)
        return data
