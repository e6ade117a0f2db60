"""The blob saver: hashing, deduplication, compression and packing, in parallel.

Workers hash each blob with the keyed BLAKE3, claim its ID (so two equal
blobs in flight are stored once), skip it if the index already has it, and
compress it; zstd and BLAKE3 release the GIL, so both cores work. The owner
thread seals finished blobs into the current pack in submission order, and a
writer thread stores full packs. Memory stays bounded: at most
`max_pending_bytes` of plaintext is in flight.

Commit order is kept by the caller: `finish()` returns only when every pack
is durable; only then may the index segment and the snapshot be written.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .compress import compress
from .crypto import content_hash
from .index import IndexSegment, PackRecord
from .pack import PackBuilder, pack_name
from .repository import Repository

SEGMENT_PACKS = 256


class Job:
    """One blob on its way into a pack; `id` is set once it is resolved."""

    __slots__ = ("type", "size", "future", "id")

    def __init__(
        self, blob_type: int, size: int, future: Future[tuple[bytes, bytes | None]]
    ) -> None:
        self.type = blob_type
        self.size = size
        self.future: Future[tuple[bytes, bytes | None]] | None = future
        self.id: bytes | None = None


class BlobSaver:
    def __init__(
        self,
        repo: Repository,
        workers: int | None = None,
        max_pending_bytes: int = 128 << 20,
        on_blob_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.repo = repo
        self.level = repo.config.compression_level
        self.pool = ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2))
        self.writer = ThreadPoolExecutor(max_workers=1)
        self.pending: deque[Job] = deque()
        self.pending_bytes = 0
        self.max_pending_bytes = max_pending_bytes
        self.claimed: set[bytes] = set()
        self.claim_lock = threading.Lock()
        self.pack: PackBuilder | None = None
        self.writes: deque[tuple[Future[None], PackRecord]] = deque()
        self.durable: list[PackRecord] = []
        self.segments: list[str] = []
        self.bytes_added = 0
        self.blobs_added = 0
        self.on_blob_stored = on_blob_stored

    # Runs on a worker thread.
    def _process(self, data: bytes, blob_id: bytes | None) -> tuple[bytes, bytes | None]:
        if blob_id is None:
            blob_id = self.repo.keys.blob_id(data)
        with self.claim_lock:
            if blob_id in self.claimed:
                return blob_id, None
            self.claimed.add(blob_id)
        if self.repo.has_blob(blob_id):
            return blob_id, None
        return blob_id, compress(data, self.level)

    def submit(self, blob_type: int, data: bytes, blob_id: bytes | None = None) -> Job:
        job = Job(blob_type, len(data), self.pool.submit(self._process, data, blob_id))
        self.pending.append(job)
        self.pending_bytes += len(data)
        while self.pending_bytes > self.max_pending_bytes:
            self._drain_one()
        return job

    def resolve(self, job: Job) -> bytes:
        while job.id is None:
            self._drain_one()
        return job.id

    def _drain_one(self) -> None:
        job = self.pending.popleft()
        assert job.future is not None
        blob_id, payload = job.future.result()
        job.future = None
        self.pending_bytes -= job.size
        if payload is not None:
            self._add_to_pack(job.type, blob_id, payload, job.size)
        job.id = blob_id

    def _add_to_pack(self, blob_type: int, blob_id: bytes, payload: bytes, raw_length: int) -> None:
        if self.pack is None:
            self.pack = PackBuilder(self.repo.keys)
        box = self.pack.seal_blob(blob_type, blob_id, payload)
        self.pack.add_sealed(blob_type, blob_id, box, raw_length)
        self.blobs_added += 1
        if self.pack.size >= self.repo.config.pack_size:
            self._flush_pack()

    def _flush_pack(self) -> None:
        pack, self.pack = self.pack, None
        if pack is None or not pack.entries:
            return
        data = pack.finish()
        pack_id = content_hash(data)
        record = PackRecord(pack_id, pack.salt, len(data), pack.entries)
        self.writes.append(
            (self.writer.submit(self.repo.backend.put, pack_name(pack_id), data), record)
        )
        self.bytes_added += len(data)
        if self.on_blob_stored:
            self.on_blob_stored(len(data))
        while len(self.writes) > 2:
            self._complete_write()

    def _complete_write(self) -> None:
        future, record = self.writes.popleft()
        future.result()
        self.durable.append(record)
        if len(self.durable) >= SEGMENT_PACKS:
            self._write_segment()

    def _write_segment(self) -> None:
        if self.durable:
            self.segments.append(self.repo.write_segment(IndexSegment(self.durable)))
            self.durable = []

    def finish(self) -> None:
        """Drain, store the last pack, wait until every pack is durable, then index them."""
        while self.pending:
            self._drain_one()
        self._flush_pack()
        while self.writes:
            self._complete_write()
        self._write_segment()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True, cancel_futures=True)
