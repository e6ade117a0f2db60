"""Snapshot records: what a snapshot is, and finding one by id, prefix or "latest".

A record is an encrypted object under snapshots/. It is written last, after
every pack and index segment it depends on, so its presence is the commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    scan_start_ns: int = (
        0  # wall clock at scan start; files modified after it are re-read next time
    )
    summary: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # not stored: the object name

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("id")
        record["version"] = 1
        return record

    @classmethod
    def from_record(cls, snapshot_id: str, record: dict[str, Any]) -> Snapshot:
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields.pop("id", None)
        return cls(**fields, id=snapshot_id)


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
