"""Journal batches in the repository: the object, the catalog of a source, its lineages.

An agent's journal (journal/, the format) reaches the repository in batches
(journal_ship.py): the framed bytes of a run of records are stored as ordinary
DATA blobs (chunked, deduplicated and encrypted like file content), then a
small sealed object `journal/<id>` lists them with the range, the timestamps and
the hashes of the records. The object is written last (packs, index segment,
object: docs/architecture.md's commit order), so a batch is visible only whole.

Batches of one source chain like the records inside them: a batch's
`prev_hash` is the hash of the record before its first, the previous batch's
`last_hash`. Such a chain is a **lineage**. A source starts a new lineage when
its journal cannot be continued (records lost, a restored agent journaling
anew) and a full snapshot has become the new base: snapshots belong to the
lineage that had started when they were taken (`since`), so a sequence number
is never matched against a snapshot of another lineage (docs/journal.md,
"Lineages").
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleancut import jsonparse
from cleancut.errors import CleancutError, IntegrityError, ObjectNotFound
from cleancut.fsio.safeio import replace_file
from cleancut.repository.objects import JOURNAL_KIND, open_json, seal_json
from cleancut.repository.records import JOURNAL_COMPACTED, JOURNAL_GAP, list_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot

JOURNAL_PREFIX = "journal/"
FORMAT_VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CATALOG_FILE = "journal-batches.json"


@dataclass(frozen=True)
class JournalBatch:
    """One stored run of records: seq first_seq..last_seq of source `name`, in `blobs`."""

    id: str  # the object's name under journal/
    name: str
    lineage: str  # hex: the hash of the lineage's first shipped record
    base_seq: int  # the lineage holds records after this one
    since: str  # ISO time from which snapshots belong to the lineage ("" for the first)
    base_snapshot: str  # the full snapshot a later lineage starts from ("" for the first)
    first_seq: int
    last_seq: int
    prev_hash: str  # hex hash of record first_seq - 1 (zeros when first_seq is a base record)
    last_hash: str  # hex hash of record last_seq
    first_ts: int  # nanoseconds since the epoch, as the records carry them
    last_ts: int
    bytes: int  # framed record bytes, the concatenation of the blobs
    blobs: tuple[str, ...]  # hex blob ids, in order
    shipped: str  # ISO time the batch was written

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def first_time(self) -> str:
        return ns_iso(self.first_ts)

    @property
    def last_time(self) -> str:
        return ns_iso(self.last_ts)

    @property
    def range(self) -> str:
        return seq_range(self.first_seq, self.last_seq)

    def to_record(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "name": self.name,
            "lineage": self.lineage,
            "base_seq": self.base_seq,
            "since": self.since,
            "base_snapshot": self.base_snapshot,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "prev_hash": self.prev_hash,
            "last_hash": self.last_hash,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "records": self.records,
            "bytes": self.bytes,
            "blobs": list(self.blobs),
            "time": self.shipped,
        }

    @classmethod
    def from_record(cls, object_id: str, record: Any) -> JournalBatch:
        """Validate a decrypted object; a malformed one is damage (IntegrityError)."""
        what = f"journal {object_id[:12]}"
        try:
            if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
                raise ValueError("unknown version")
            batch = cls(
                id=object_id,
                name=_str(record["name"]),
                lineage=_hex(record["lineage"]),
                base_seq=_int(record["base_seq"]),
                since=_str(record["since"]),
                base_snapshot=_str(record["base_snapshot"]),
                first_seq=_int(record["first_seq"]),
                last_seq=_int(record["last_seq"]),
                prev_hash=_hex(record["prev_hash"]),
                last_hash=_hex(record["last_hash"]),
                first_ts=_int(record["first_ts"]),
                last_ts=_int(record["last_ts"]),
                bytes=_int(record["bytes"]),
                blobs=tuple(_hex(b) for b in record["blobs"]),
                shipped=_str(record["time"]),
            )
            if not 1 <= batch.first_seq <= batch.last_seq or batch.first_seq <= batch.base_seq:
                raise ValueError(f"impossible range {batch.first_seq}..{batch.last_seq}")
            if record.get("records") != batch.records or not batch.blobs:
                raise ValueError("record count or blob list does not fit the range")
            if batch.first_ts > batch.last_ts:
                raise ValueError("its first record is newer than its last")
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{what} is not a valid journal batch ({exc})") from None
        return batch


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ValueError("expected 64 hex digits")
    return value


def ns_iso(ns: int) -> str:
    """A record timestamp as ISO 8601 UTC with microseconds (what `ls` and JSON show)."""
    moment = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000 // 1000:06d}Z"


def seq_range(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}..{last}"


def write_batch(repo: Repository, batch: JournalBatch) -> JournalBatch:
    """Seal and store the object; the returned batch carries its id (the object name)."""
    record = batch.to_record()
    object_id, stored = seal_json(repo.keys, JOURNAL_KIND, record)
    repo.write_object(JOURNAL_PREFIX + object_id, stored)
    return JournalBatch.from_record(object_id, record)


# --- the catalog -----------------------------------------------------------------


@dataclass
class Lineage:
    """Batches of one source chained by hash, in sequence order."""

    id: str
    since: str
    base_seq: int
    base_snapshot: str
    batches: list[JournalBatch] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq

    @property
    def last(self) -> JournalBatch:
        return max(self.batches, key=lambda b: (b.last_seq, b.shipped))

    @property
    def last_seq(self) -> int:
        return self.last.last_seq

    @property
    def last_hash(self) -> str:
        return self.last.last_hash

    def owns(self, snapshot: Snapshot, later: Lineage | None) -> bool:
        """Whether `snapshot` was taken while this lineage was the source's journal."""
        return snapshot.time >= self.since and (later is None or snapshot.time < later.since)


@dataclass
class Catalog:
    """Everything the repository holds of one source's journal."""

    name: str
    lineages: list[Lineage]  # oldest first; the last one is the journal being shipped
    damaged: list[str]  # objects under journal/ that cannot be read (their source is unknown)
    gaps: list[dict[str, Any]]  # journal-gap records of the source, oldest first
    compacted: dict[str, int]  # lineage -> records up to this one were dropped by prune

    @property
    def batches(self) -> list[JournalBatch]:
        return sorted(
            (b for lin in self.lineages for b in lin.batches),
            key=lambda b: (b.first_seq, b.last_seq, b.shipped, b.id),
        )

    @property
    def current(self) -> Lineage | None:
        return self.lineages[-1] if self.lineages else None

    def lineage_of(self, snapshot: Snapshot) -> Lineage | None:
        for lin, later in zip(self.lineages, [*self.lineages[1:], None], strict=False):
            if lin.owns(snapshot, later):
                return lin
        return None

    def start_of(self, lineage: Lineage) -> int:
        """The first record the lineage should hold: after its base, or after compaction."""
        return max(lineage.base_seq, self.compacted.get(lineage.id, 0)) + 1


def group_lineages(batches: list[JournalBatch]) -> list[Lineage]:
    by_id: dict[str, Lineage] = {}
    for batch in sorted(batches, key=lambda b: (b.first_seq, b.last_seq, b.shipped, b.id)):
        lin = by_id.get(batch.lineage)
        if lin is None:
            lin = by_id[batch.lineage] = Lineage(
                batch.lineage, batch.since, batch.base_seq, batch.base_snapshot
            )
        lin.batches.append(batch)
    return sorted(by_id.values(), key=lambda lin: (lin.since, min(b.shipped for b in lin.batches)))


def all_batches(repo: Repository, cached: bool = True) -> tuple[list[JournalBatch], list[str]]:
    """Every readable batch of every source, and the ids of objects that cannot be read.

    Batches are immutable and named by their hash, so decrypted ones are kept in
    the local cache directory and only new names are fetched (a source ships
    one a minute; an object store charges per request). Like the rest of the
    cache it is never the truth: the listing decides what exists, and whatever
    reads a batch's records reads its object again (`load_batch`). With
    cached=False (verify) every object is read and authenticated.
    """
    cache_file = repo.local_dir / _CATALOG_FILE
    known = _read_catalog_cache(cache_file) if cached else {}
    present = repo.names(JOURNAL_PREFIX)
    found: list[JournalBatch] = []
    damaged: list[str] = []
    fresh: dict[str, Any] = {}
    for oid in sorted(present):
        record = known.get(oid)
        if record is None:
            try:
                stored = repo.read_object(JOURNAL_PREFIX + oid)
            except ObjectNotFound:
                continue  # compacted while we listed
            try:
                record = open_json(repo.keys, JOURNAL_KIND, oid, stored)
                JournalBatch.from_record(oid, record)
            except IntegrityError:
                damaged.append(oid)
                continue
        fresh[oid] = record
        found.append(JournalBatch.from_record(oid, record))
    if fresh.keys() != known.keys():
        _write_catalog_cache(cache_file, fresh)
    return found, damaged


def _read_catalog_cache(path: Path) -> dict[str, Any]:
    try:
        doc = jsonparse.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_catalog_cache(path: Path, doc: dict[str, Any]) -> None:
    with contextlib.suppress(OSError, CleancutError):  # a cache not written costs reads
        replace_file(path, json.dumps(doc, sort_keys=True).encode(), 0o600)


def load_batch(repo: Repository, object_id: str) -> JournalBatch:
    """One batch read from the repository itself and authenticated (not from the cache)."""
    stored = repo.read_object(JOURNAL_PREFIX + object_id)
    return JournalBatch.from_record(
        object_id, open_json(repo.keys, JOURNAL_KIND, object_id, stored)
    )


def load_catalog(repo: Repository, name: str, cached: bool = True) -> Catalog:
    return load_catalogs(repo, [name], cached)[name]


def load_catalogs(
    repo: Repository, names: list[str] | None = None, cached: bool = True
) -> dict[str, Catalog]:
    """The catalog of each source (of every source with batches, when `names` is None),
    from one listing of journal/ and records/."""
    batches, damaged = all_batches(repo, cached)
    records = list_records(repo)
    if names is None:
        names = sorted({b.name for b in batches})
    out: dict[str, Catalog] = {}
    for name in names:
        gaps = [r for r in records if r.get("type") == JOURNAL_GAP and r.get("name") == name]
        compacted: dict[str, int] = {}
        for r in records:
            if r.get("type") == JOURNAL_COMPACTED and r.get("name") == name:
                lineage, upto = str(r.get("lineage", "")), r.get("upto", 0)
                if isinstance(upto, int):
                    compacted[lineage] = max(compacted.get(lineage, 0), upto)
        mine = [b for b in batches if b.name == name]
        out[name] = Catalog(name, group_lineages(mine), damaged, gaps, compacted)
    return out


def batches(repo: Repository, name: str) -> list[JournalBatch]:
    """The readable batches of source `name`, by first sequence number."""
    return load_catalog(repo, name).batches


def last_shipped(repo: Repository, name: str) -> int | None:
    """The last record of the source's current lineage in the repository (None: none yet)."""
    current = load_catalog(repo, name).current
    return current.last_seq if current else None


def journal_seq_of(snapshot: Snapshot) -> int | None:
    """The journal record a snapshot reflects (hot backups of journaling agents record it)."""
    value = (snapshot.capture or {}).get("journal_seq")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
