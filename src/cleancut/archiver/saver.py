"""The blob saver: hashing, deduplication, compression, encryption and packing, in parallel.

Worker threads take a blob from submission to sealed bytes in a pack (a blob
below INLINE_BELOW is taken there by the submitting thread itself): they
hash it with the keyed BLAKE3, claim its ID (so two equal blobs in flight are
stored once), skip it if the index already has it, compress it, and seal it
under the key of the pack it joins. BLAKE3, zstd and AES-GCM release the GIL,
so both cores work while the owner thread only reads and chunks. A writer
thread stores full packs. Memory stays bounded: at most `max_pending_bytes`
of plaintext is in flight, at most `MAX_PACKS_IN_WRITE` packs wait for the
disk, and freed buffers go back to the system (archiver/allocator.py).

Blobs sealed by worker processes (archiver/pool.py) arrive through
`reserve_sealed` and `commit_sealed`: the same dedup decision, then room in the
pack of the salt the worker sealed them under (read into it straight from the
pipe), stored when the worker retires that salt (`retire_salt`).

Commit order is kept by the caller: `finish()` returns only when every pack
is durable and indexed; only then may the snapshot be written.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cleancut.repository.compress import compress
from cleancut.repository.crypto import OVERHEAD, content_hash
from cleancut.repository.index import IndexSegment, PackRecord
from cleancut.repository.pack import DATA, PackBuffer, PackBuilder, pack_name
from cleancut.repository.repository import Repository

from .allocator import fix_mmap_threshold

SEGMENT_PACKS = 256
MAX_PACKS_IN_WRITE = 1
# Blobs below this are compressed and sealed in the submitting thread (decision 0019): a
# thread hand-off (future, queue, wake-up, GIL round trip) cost more than their work, and
# the futures of 12,000 tree blobs held 9 MiB until collected.
INLINE_BELOW = 256 << 10


class Job:
    """One submitted blob; `id` is set once the owner has collected it."""

    __slots__ = ("size", "future", "id")

    def __init__(self, size: int, future: Future[bytes] | None) -> None:
        self.size = size
        self.future: Future[bytes] | None = future
        self.id: bytes | None = None


class _OpenPack:
    __slots__ = ("builder", "sealing", "closed", "stored")

    def __init__(self, builder: PackBuilder) -> None:
        self.builder = builder
        self.sealing = 0  # workers sealing a blob under this pack's key right now
        self.closed = False  # full: no new blob may join
        self.stored = False  # handed to the writer (exactly once)


class BlobSaver:
    def __init__(
        self,
        repo: Repository,
        workers: int | None = None,
        max_pending_bytes: int = 16 << 20,
        on_pack_stored: Callable[[int], None] | None = None,
    ) -> None:
        fix_mmap_threshold()  # large buffers go back to the system when freed
        self.repo = repo
        self.level = repo.config.compression_level
        self.pack_size = repo.config.pack_size
        self.pool = ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 2))
        # A disk takes one pack at a time best; an object store wants several PUTs in
        # flight, so uploads overlap with chunking and sealing (the backend says how many).
        writers = repo.write_concurrency
        self.writer = ThreadPoolExecutor(max_workers=writers)
        self.write_slots = threading.Semaphore(MAX_PACKS_IN_WRITE + writers - 1)
        self.pending: deque[Job] = deque()
        self.pending_bytes = 0
        self.max_pending_bytes = max_pending_bytes
        self.lock = threading.Lock()
        self.claimed: set[bytes] = set()
        # One open pack per blob type: trees live in their own packs, so listing and
        # comparing snapshots reads a few small packs instead of every data pack.
        self.current: dict[int, _OpenPack] = {}
        self.writes: deque[tuple[Future[None], PackRecord]] = deque()
        self.durable: list[PackRecord] = []
        self.segments: list[str] = []
        self.bytes_added = 0
        self.blobs_added = 0
        self.on_pack_stored = on_pack_stored
        # Blobs to store although the index has them (repair: salvaging from a damaged pack).
        self.store_again: set[bytes] = set()
        # Data packs of blobs sealed by worker processes, by the salt they sealed under.
        self.by_salt: dict[bytes, PackBuffer] = {}

    # --- owner thread ---------------------------------------------------------

    def submit(self, blob_type: int, data: bytes | memoryview, blob_id: bytes | None = None) -> Job:
        if len(data) < INLINE_BELOW:
            # A tree or a small file: handing it to a thread would cost more than the work.
            job = Job(len(data), None)
            job.id = self._process(blob_type, data, blob_id)
            return job
        job = Job(len(data), self.pool.submit(self._process, blob_type, data, blob_id))
        self.pending.append(job)
        self.pending_bytes += len(data)
        while self.pending_bytes > self.max_pending_bytes:
            self._collect_one()
        return job

    def resolve(self, job: Job) -> bytes:
        while job.id is None:
            self._collect_one()
        return job.id

    def _collect_one(self) -> None:
        job = self.pending.popleft()
        assert job.future is not None
        job.id = job.future.result()
        job.future = None
        self.pending_bytes -= job.size
        self._reap_writes(block=False)

    def reap(self) -> None:
        """Collect finished pack writes (raising a write's error) without waiting."""
        self._reap_writes(block=False)

    def finish(self) -> None:
        """Wait for every blob, store the last pack, wait until all are durable, index them."""
        while self.pending:
            self._collect_one()
        with self.lock:
            for pack in self.current.values():
                pack.closed = pack.stored = True
            last = [pack.builder for pack in self.current.values()]
            last += self.by_salt.values()
            self.current.clear()
            self.by_salt.clear()
        for builder in last:
            if builder.entries:
                self._store_pack(builder)
        self._reap_writes(block=True)
        self._write_segment()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True, cancel_futures=True)

    def _reap_writes(self, block: bool) -> None:
        while self.writes and (block or self.writes[0][0].done()):
            with self.lock:
                future, record = self.writes.popleft()
            future.result()
            self.durable.append(record)
            if len(self.durable) >= SEGMENT_PACKS:
                self._write_segment()

    def _write_segment(self) -> None:
        if self.durable:
            self.segments.append(self.repo.write_segment(IndexSegment(self.durable)))
            self.durable = []

    # --- blobs sealed by worker processes (archiver/pool.py's reader threads) ---

    def reserve_sealed(self, salt: bytes, blob_id: bytes, length: int) -> memoryview | None:
        """Room in the pack of `salt` for a data blob a worker process sealed, or None if
        the index or an earlier blob of this backup has it. The caller reads the blob's
        `length` sealed bytes into the room, then calls `commit_sealed`."""
        with self.lock:
            if blob_id in self.claimed:
                return None
            self.claimed.add(blob_id)
            if blob_id not in self.store_again and self.repo.has_blob(blob_id):
                return None
            pack = self.by_salt.get(salt)
            if pack is None:
                capacity = self.pack_size + self.repo.config.chunker.max_size + 1 + OVERHEAD
                pack = self.by_salt[salt] = PackBuffer(self.repo.keys, salt, capacity)
            return pack.room(length)

    def commit_sealed(self, salt: bytes, blob_id: bytes, length: int, raw_length: int) -> None:
        with self.lock:
            self.by_salt[salt].commit(DATA, blob_id, length, raw_length)
            self.blobs_added += 1

    def retire_salt(self, salt: bytes) -> None:
        """The worker sealed its last blob under `salt`: its pack is complete."""
        with self.lock:
            builder = self.by_salt.pop(salt, None)
        if builder is not None and builder.entries:
            self._store_pack(builder)

    # --- worker threads -------------------------------------------------------

    def _process(self, blob_type: int, data: bytes | memoryview, blob_id: bytes | None) -> bytes:
        if blob_id is None:
            blob_id = self.repo.keys.blob_id(data)
        with self.lock:
            if blob_id in self.claimed:
                return blob_id
            self.claimed.add(blob_id)
        if blob_id not in self.store_again and self.repo.has_blob(blob_id):
            return blob_id
        payload = compress(data, self.level)
        with self.lock:
            pack = self.current.get(blob_type)
            if pack is None:
                pack = self.current[blob_type] = _OpenPack(PackBuilder(self.repo.keys))
            pack.sealing += 1
        box = pack.builder.seal_blob(blob_type, blob_id, payload)
        full = None
        with self.lock:
            pack.builder.add_sealed(blob_type, blob_id, box, len(data))
            pack.sealing -= 1
            self.blobs_added += 1
            if not pack.closed and pack.builder.size >= self.pack_size:
                pack.closed = True
                if self.current.get(blob_type) is pack:
                    del self.current[blob_type]
            if pack.closed and pack.sealing == 0 and not pack.stored:
                pack.stored = True
                full = pack.builder
        if full is not None:
            self._store_pack(full)
        return blob_id

    def _store_pack(self, builder: PackBuilder) -> None:
        data = builder.finish()  # the builder's parts are released: one copy of the pack
        pack_id = content_hash(data)
        record = PackRecord(pack_id, builder.salt, len(data), builder.entries)
        self.write_slots.acquire()  # backpressure: bounded packs waiting for the disk
        future = self.writer.submit(self._write_pack, pack_name(pack_id), data)
        with self.lock:
            self.writes.append((future, record))
            self.bytes_added += len(data)

    def _write_pack(self, name: str, data: bytes) -> None:
        try:
            self.repo.write_object(name, data)
        finally:
            self.write_slots.release()
        if self.on_pack_stored:
            self.on_pack_stored(len(data))
