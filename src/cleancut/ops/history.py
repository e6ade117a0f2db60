"""The history behind `status`: each source's backups, failures and restore tests over time.

`status` (status.py, health.py) judges the present from the repository's snapshot
records and its BACKUP_ATTEMPT and RESTORE_TEST records; this module lays the same
records out as a timeline, for the status page (ops/page/). Nothing here is kept
anywhere else: any host with the passphrase draws the same history.

A backup entry is one attempt: the snapshot it produced when it worked (kind,
consistency, bytes added, pause), the error when it did not. Snapshots written
without an attempt record (older repositories, `copy`) appear as attempts that
worked. Growth is the running sum of the bytes each snapshot added to the
repository, in time order, over all sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cleancut.clock import from_iso
from cleancut.repository.records import BACKUP_ATTEMPT, RESTORE_TEST, list_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot


@dataclass(frozen=True)
class BackupEntry:
    time: datetime
    ok: bool
    kind: str | None  # full or incremental; None when the attempt failed before deciding
    consistency: str | None
    quiesce_missed: bool
    snapshot: str | None
    error: str | None
    bytes_added: int | None
    pause_ms: float | None
    duration_s: float | None


@dataclass(frozen=True)
class RestoreTestEntry:
    time: datetime
    passed: bool
    rto_s: float | None
    snapshot: str


@dataclass
class SourceHistory:
    name: str
    backups: list[BackupEntry] = field(default_factory=list)  # oldest first
    restore_tests: list[RestoreTestEntry] = field(default_factory=list)  # oldest first


@dataclass
class History:
    sources: dict[str, SourceHistory]
    growth: list[tuple[datetime, int]]  # (time, bytes the repository has received so far)


def history(repo: Repository) -> History:
    """Every source's timeline, from the records `status` reads."""
    snapshots = repo.snapshots()
    records = list_records(repo)
    by_id = {s.id: s for s in snapshots}
    sources: dict[str, SourceHistory] = {}

    def of(name: str) -> SourceHistory:
        return sources.setdefault(name, SourceHistory(name))

    recorded: set[str] = set()
    for r in records:
        if r.get("type") == BACKUP_ATTEMPT and r.get("name"):
            snap = by_id.get(str(r.get("snapshot") or ""))
            if snap is not None:
                recorded.add(snap.id)
            of(str(r["name"])).backups.append(_attempt_entry(r, snap))
        elif r.get("type") == RESTORE_TEST and r.get("name"):
            of(str(r["name"])).restore_tests.append(_test_entry(r))
    for snap in snapshots:
        if snap.id not in recorded:
            of(snap.name).backups.append(_snapshot_entry(snap))
    for h in sources.values():
        h.backups.sort(key=lambda b: b.time)
        h.restore_tests.sort(key=lambda t: t.time)
    return History(dict(sorted(sources.items())), _growth(snapshots))


def _attempt_entry(record: dict[str, Any], snap: Snapshot | None) -> BackupEntry:
    ok = bool(record.get("ok"))
    return BackupEntry(
        time=from_iso(str(record["time"])),
        ok=ok,
        kind=snap.kind if snap is not None else record.get("kind"),
        consistency=snap.consistency if snap is not None else record.get("consistency"),
        quiesce_missed=bool(record.get("quiesce_missed")),
        snapshot=snap.id if snap is not None else record.get("snapshot"),
        error=None if ok else (record.get("error") or "failed"),
        bytes_added=_bytes_added(snap),
        pause_ms=_pause_ms(snap),
        duration_s=_float(record.get("duration_s")),
    )


def _snapshot_entry(snap: Snapshot) -> BackupEntry:
    return BackupEntry(
        time=from_iso(snap.time),
        ok=True,
        kind=snap.kind,
        consistency=snap.consistency,
        quiesce_missed=False,
        snapshot=snap.id,
        error=None,
        bytes_added=_bytes_added(snap),
        pause_ms=_pause_ms(snap),
        duration_s=_float(snap.summary.get("duration_s")),
    )


def _test_entry(record: dict[str, Any]) -> RestoreTestEntry:
    return RestoreTestEntry(
        time=from_iso(str(record["time"])),
        passed=bool(record.get("passed")),
        rto_s=_float(record.get("rto_s")),
        snapshot=str(record.get("snapshot") or ""),
    )


def _growth(snapshots: list[Snapshot]) -> list[tuple[datetime, int]]:
    total = 0
    out = []
    for snap in sorted(snapshots, key=lambda s: s.time):
        total += _bytes_added(snap) or 0
        out.append((from_iso(snap.time), total))
    return out


def _bytes_added(snap: Snapshot | None) -> int | None:
    if snap is None or "bytes_added" not in snap.summary:
        return None
    return int(snap.summary["bytes_added"])


def _pause_ms(snap: Snapshot | None) -> float | None:
    """The agent's pause, when a hot backup recorded one (a cold backup has none)."""
    return None if snap is None else _float(snap.capture.get("pause_ms"))


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
