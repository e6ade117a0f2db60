"""Snapshot records: what a snapshot is, and finding one by id, prefix or "latest".

A record is an encrypted object under snapshots/. It is written last, after
every pack and index segment it depends on, so its presence is the commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import blake3

from cleancut.errors import SnapshotNotFound, UsageError

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
    # The clock read earlier than the source's newest snapshot: `time` is then that
    # snapshot's time plus 1 µs (order never goes back) and this is the real reading.
    clock_went_back: bool = False
    clock_reading: str | None = None
    # What the capture's format checks found (repository/verdicts.py); None: not checked.
    validation: dict[str, Any] | None = None
    # A source of several directories (decision 0006): each name at the tree's root, with
    # the path it was read from. None for a one-directory source, and then not stored.
    dirs: list[dict[str, str]] | None = None
    id: str = ""  # not stored: the object name
    record_hash: str = ""  # not stored: BLAKE3 of the canonical record, for chain links

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("id")
        record.pop("record_hash")
        if not self.clock_went_back:  # records of a sane clock stay as they always were
            record.pop("clock_went_back")
            record.pop("clock_reading")
        if self.validation is None:  # records without a capture check stay as they were
            record.pop("validation")
        if self.dirs is None:  # one-directory records stay exactly as they always were
            record.pop("dirs")
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
        newest = newest_of_each(pool)
        if not newest:
            raise SnapshotNotFound(
                "the repository holds no snapshot" + (f" of {name}" if name else "")
            )
        # One source: its newest in chain order. Several: the newest of those by time,
        # the only measure sources share.
        return max(newest.values(), key=lambda s: (s.time, s.id))
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


OrderKey = tuple[str, str, int, str, str]


def chain_order(pool: list[Snapshot]) -> Callable[[Snapshot], OrderKey]:
    """A sort key for the snapshots of ONE source, oldest first, that a clock stepped
    back cannot reorder within a chain: chains by their full's time, then by sequence
    number inside a chain. Siblings with the same sequence number (a fork) are ordered
    by time, then id, so the same one is "newest" everywhere."""
    starts: dict[str, str] = {}
    for snap in pool:
        if snap.chain:
            starts[snap.chain] = min(starts.get(snap.chain, snap.time), snap.time)
    starts.update({s.chain: s.time for s in pool if s.chain and s.is_full})

    def key(snap: Snapshot) -> OrderKey:
        if not snap.chain:
            return (snap.time, snap.id, snap.seq, snap.time, snap.id)
        return (starts.get(snap.chain, snap.time), snap.chain, snap.seq, snap.time, snap.id)

    return key


def newest_of_each(snapshots: list[Snapshot]) -> dict[str, Snapshot]:
    """Each source's newest snapshot, in chain order (see `chain_order`)."""
    by_name: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        by_name.setdefault(snap.name, []).append(snap)
    return {name: max(group, key=chain_order(group)) for name, group in by_name.items()}


@dataclass(frozen=True)
class Stamp:
    """The time a new snapshot records, and whether the clock had gone back."""

    time: str
    went_back: bool
    reading: str
    newest: Snapshot | None

    def warning(self) -> str:
        newest = self.newest
        assert newest is not None
        return (
            f"the clock reads {self.reading}, earlier than the newest snapshot "
            f"{newest.id[:12]} of {newest.name} at {newest.time}; recorded at {self.time} "
            "with clock_went_back (fix the clock: NTP, the RTC)"
        )


def stamp(snapshots: list[Snapshot], name: str, reading: datetime) -> Stamp:
    """Never record a time earlier than the source's newest: a clock stepped back (NTP
    at 3 a.m., a VM restored) must not reorder snapshots. The snapshot is still taken
    (never lose a backup) and keeps the real reading beside the clamped time."""
    text = _iso(reading)
    mine = [s for s in snapshots if s.name == name]
    newest = max(mine, key=lambda s: (s.time, s.id), default=None)
    if newest is None or text >= newest.time:  # a tie is ordered by chain and seq
        return Stamp(text, False, text, None)
    later = _iso(_parse_time(newest.time) + timedelta(microseconds=1))
    return Stamp(later, True, text, newest)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
