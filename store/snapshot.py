"""Snapshot records: what a snapshot is, and finding one by id, prefix or "latest".

A record is an encrypted object under snapshots/. It is written last, after
every pack and index segment it depends on, so its presence is the commit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import blake3

from .errors import SnapshotNotFound, UsageError

SNAPSHOTS_PREFIX = "snapshots/"
RECORD_KIND = "snapshot"


@dataclass
class Snapshot:
    time: str  # ISO 8601 UTC, when the scan started
    name: str  # the source's name in the catalog
    host: str
    user: str
    paths: list[str]
    tree: str  # root tree blob id (hex)
    tags: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    kind: str = "full"
    parent: str | None = None  # previous snapshot of the same name, used for change detection
    chain: str | None = None
    seq: int = 0
    parent_hash: str | None = None
    consistency: str = "unquiesced"
    # Wall clock at scan start; files modified after it are re-read next time.
    scan_start_ns: int = 0
    reason: str = ""  # why this kind (policy)
    delta: str | None = None  # an incremental's delta manifest blob id (hex)
    summary: dict[str, Any] = field(default_factory=dict)
    # How a hot backup captured it: mode, steps and their durations, pause, actions in flight.
    capture: dict[str, Any] = field(default_factory=dict)
    # A replica made by `copy`: {repository, snapshot, origin: {repository, snapshot}}.
    copied_from: dict[str, Any] | None = None
    id: str = ""  # not stored: the object name
    record_hash: str = ""  # not stored: BLAKE3 of the canonical record, for chain links

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("id")
        record.pop("record_hash")
        record["version"] = 1
        return record

    @classmethod
    def from_record(cls, snapshot_id: str, record: dict[str, Any]) -> Snapshot:
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields.pop("id", None)
        fields.pop("record_hash", None)
        return cls(**fields, id=snapshot_id, record_hash=record_hash(record))

    @property
    def is_full(self) -> bool:
        return self.kind == "full"


def record_hash(record: dict[str, Any]) -> str:
    """The hash a child stores of its parent: BLAKE3 of the canonical JSON record."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return blake3.blake3(canonical).hexdigest()


def resolve(snapshots: list[Snapshot], ref: str, name: str | None = None) -> Snapshot:
    """An id, an unambiguous id prefix, or "latest" (optionally of one source name)."""
    pool = [s for s in snapshots if name is None or s.name == name]
    if ref == "latest":
        if not pool:
            raise SnapshotNotFound(
                "the repository holds no snapshot" + (f" of {name}" if name else "")
            )
        return max(pool, key=lambda s: (s.time, s.id))
    matches = [s for s in pool if s.id.startswith(ref)]
    if not matches:
        raise SnapshotNotFound(f"no snapshot matches {ref!r}")
    if len(matches) > 1:
        raise UsageError(
            f"snapshot id prefix {ref!r} is ambiguous ({len(matches)} snapshots match)"
        )
    return matches[0]


def snapshot_at(snapshots: list[Snapshot], moment: datetime, name: str | None) -> Snapshot:
    """The newest snapshot of a source taken at or before `moment`."""
    names = {s.name for s in snapshots}
    if name is None:
        if len(names) > 1:
            raise UsageError(f"--at needs --name: the repository holds {len(names)} sources")
        name = next(iter(names), None)
    pool = [s for s in snapshots if s.name == name and _parse_time(s.time) <= moment]
    if not pool:
        raise SnapshotNotFound(f"no snapshot of {name} at or before {moment.isoformat()}")
    return max(pool, key=lambda s: (s.time, s.seq, s.id))


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
