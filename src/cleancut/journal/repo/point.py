"""Restore to a point: which snapshot to start from, and up to which record to replay.

A point is a record of the source's journal (`--seq N`) or a moment (`--at
TIME`: the last record written at or before it). The base is the newest
snapshot of the same lineage whose journal_seq is at or before the point;
the records after it, up to the point, come from the repository's batches.
Newest means the highest journal_seq, so the replay is as short as it can be,
and a kept snapshot is always its own restore point.

`plan_point` is a pure function of the catalog and the snapshots (records
are read through a callback, only when a moment falls inside a batch), so
retention and compaction can be checked against it without a repository.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cleancut.clock import iso
from cleancut.errors import SnapshotNotFound, UsageError
from cleancut.journal.frame import JournalRecord
from cleancut.repository.snapshot import Snapshot

from .store import Catalog, JournalBatch, Lineage, journal_seq_of

RecordsOf = Callable[[JournalBatch], list[JournalRecord]]


@dataclass(frozen=True)
class PointPlan:
    snapshot: Snapshot
    base_seq: int  # the snapshot's journal_seq: the target reflects it after the restore
    upto_seq: int  # the record the restore reaches (base_seq: nothing to replay)
    lineage: Lineage | None  # where the records come from (None: nothing to replay)


def plan_point(
    catalog: Catalog,
    snapshots: list[Snapshot],
    seq: int | None = None,
    at: datetime | None = None,
    records_of: RecordsOf | None = None,
) -> PointPlan | None:
    """The base snapshot and the record to reach; None when the source has no journal
    batches and a moment was asked for (a plain restore of the snapshot at that time)."""
    if (seq is None) == (at is None):
        raise UsageError("give a sequence number or a time, not both")
    mine = [s for s in snapshots if s.name == catalog.name and journal_seq_of(s) is not None]
    if seq is not None:
        return _plan_seq(catalog, mine, seq)
    assert at is not None
    return _plan_at(catalog, mine, at, records_of)


def _order(snap: Snapshot) -> tuple[int, str, str]:
    return (journal_seq_of(snap) or 0, snap.time, snap.id)


def _owned(catalog: Catalog, lineage: Lineage, snaps: list[Snapshot]) -> list[Snapshot]:
    return [s for s in snaps if catalog.lineage_of(s) is lineage]


def _base(snaps: list[Snapshot], upto: int) -> Snapshot | None:
    fit = [s for s in snaps if (journal_seq_of(s) or 0) <= upto]
    return max(fit, key=_order) if fit else None


def _plan_seq(catalog: Catalog, snaps: list[Snapshot], seq: int) -> PointPlan:
    name = catalog.name
    holding = [lin for lin in catalog.lineages if lin.base_seq <= seq <= lin.last_seq]
    if holding:
        lineage = holding[-1]  # the newest lineage that has the record
        base = _base(_owned(catalog, lineage, snaps), seq)
        if base is None:
            raise SnapshotNotFound(
                f"no snapshot of {name} to replay record {seq} onto: none of its journal "
                f"lineage is at or before record {seq}"
            )
        base_seq = journal_seq_of(base) or 0
        _check_reach(catalog, lineage, base_seq, seq)
        return PointPlan(base, base_seq, seq, lineage)
    exact = [s for s in snaps if journal_seq_of(s) == seq]
    if exact:
        snap = max(exact, key=_order)
        return PointPlan(snap, seq, seq, None)
    current = catalog.current
    if current is None:
        raise UsageError(
            f"record {seq} of {name} is not in the repository: no journal of {name} was "
            "shipped, and no snapshot was taken at that record"
        )
    last = max(lin.last_seq for lin in catalog.lineages)
    if seq > last:
        raise UsageError(
            f"record {seq} of {name} is not shipped: the repository's journal of {name} "
            f"ends at record {current.last_seq}"
        )
    raise UsageError(
        f"record {seq} of {name} is in no journal lineage the repository holds "
        f"(compacted, or before the journal was shipped); its journal starts after record "
        f"{min(catalog.start_of(lin) - 1 for lin in catalog.lineages)}"
    )


def _plan_at(
    catalog: Catalog, snaps: list[Snapshot], at: datetime, records_of: RecordsOf | None
) -> PointPlan | None:
    at_iso = moment = iso(at)
    started = [lin for lin in catalog.lineages if lin.since <= at_iso]
    if not started:
        return None
    lineage = started[-1]
    owned = _owned(catalog, lineage, snaps)
    upto = _last_record_at(lineage, _ns(at), records_of)
    taken = [journal_seq_of(s) or 0 for s in owned if s.time <= at_iso]
    if taken and (upto is None or max(taken) > upto):
        upto = max(taken)  # a snapshot at or before the moment reflects more than was shipped
    if upto is None:
        return None
    base = _base(owned, upto)
    if base is None:
        raise SnapshotNotFound(
            f"no snapshot of {catalog.name} to replay onto for {moment}: none of its journal "
            f"lineage is at or before record {upto}"
        )
    base_seq = journal_seq_of(base) or 0
    _check_reach(catalog, lineage, base_seq, upto)
    return PointPlan(base, base_seq, upto, lineage if upto > base_seq else None)


def _check_reach(catalog: Catalog, lineage: Lineage, base_seq: int, upto: int) -> None:
    """Refuse (exit 2) a point whose records before the lineage's first batch are gone."""
    start = catalog.start_of(lineage)
    if base_seq < upto and base_seq + 1 < start:
        why = "compacted by prune" if lineage.id in catalog.compacted else "never shipped"
        raise UsageError(
            f"record {upto} of {catalog.name} cannot be reached: the nearest snapshot before "
            f"it is at record {base_seq}, and records {base_seq + 1}..{start - 1} are not in "
            f"the repository ({why})"
        )


def _last_record_at(lineage: Lineage, at_ns: int, records_of: RecordsOf | None) -> int | None:
    """The last shipped record of the lineage written at or before `at_ns`."""
    before = [b for b in lineage.batches if b.first_ts <= at_ns]
    if not before:
        return None
    batch = max(before, key=lambda b: b.last_seq)
    if batch.last_ts <= at_ns:
        return batch.last_seq
    if records_of is None:
        return batch.first_seq  # without the records, the first is the last known to be early
    return max(r.seq for r in records_of(batch) if r.ts_ns <= at_ns)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
