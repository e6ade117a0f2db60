"""Writing one batch: records' framed bytes into blobs, then the journal object.

The bytes are chunked with the repository's chunker (FastCDC, the config's
sizes) and stored through the blob saver as DATA blobs, so they are
compressed, encrypted and deduplicated like file content. The saver's
`finish` returns when the packs are durable and the index segment naming
them is written; only then is the journal object written (docs/architecture.md: commit
order), so a ship killed at any instant leaves no visible batch.
"""

from __future__ import annotations

from fastcdc import fastcdc

from cleancut import clock
from cleancut.archiver.saver import BlobSaver
from cleancut.journal.frame import JournalRecord
from cleancut.repository.config import ChunkerParams
from cleancut.repository.pack import DATA
from cleancut.repository.repository import Repository

from .store import JournalBatch, write_batch

MAX_BATCH_BYTES = 64 << 20
"""A run with more new records than this stores several batches, each one whole."""


class Packer:
    """Gathers records into batches and commits each: packs, index segment, object."""

    def __init__(self, repo: Repository, name: str, lineage: tuple[str, int, str, str]) -> None:
        self.repo = repo
        self.name = name
        self.lineage = lineage
        self.buf = bytearray()
        self.first: JournalRecord | None = None
        self.last: JournalRecord | None = None
        self.written: list[JournalBatch] = []
        self.bytes_added = 0

    def add(self, rec: JournalRecord, raw: bytes) -> None:
        if self.first is None:
            self.first = rec
        self.buf += raw
        self.last = rec
        if len(self.buf) >= MAX_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        first, last = self.first, self.last
        if first is None or last is None:
            return
        data = bytes(self.buf)
        saver = BlobSaver(self.repo)
        try:
            chunks = chunk_buffer(data, self.repo.config.chunker)
            jobs = [saver.submit(DATA, chunk) for chunk in chunks]
            saver.finish()  # packs durable, then the index segment naming them
            blobs = tuple(saver.resolve(job).hex() for job in jobs)
            self.bytes_added += saver.bytes_added
        finally:
            saver.close()
        lineage, base_seq, since, base_snapshot = self.lineage
        batch = JournalBatch(
            id="",
            name=self.name,
            lineage=lineage,
            base_seq=base_seq,
            since=since,
            base_snapshot=base_snapshot,
            first_seq=first.seq,
            last_seq=last.seq,
            prev_hash=first.prev.hex(),
            last_hash=last.hash.hex(),
            first_ts=first.ts_ns,
            last_ts=last.ts_ns,
            bytes=len(data),
            blobs=blobs,
            shipped=clock.iso(clock.now()),
        )
        self.written.append(write_batch(self.repo, batch))  # last: the commit
        self.buf = bytearray()
        self.first = self.last = None


def chunk_buffer(data: bytes, params: ChunkerParams) -> list[memoryview]:
    """Content-defined chunks of an in-memory buffer, with the repository's parameters."""
    view = memoryview(data)
    if len(data) <= params.min_size:
        return [view]
    return [
        view[c.offset : c.offset + c.length]
        for c in fastcdc(
            view, min_size=params.min_size, avg_size=params.avg_size, max_size=params.max_size
        )
    ]
