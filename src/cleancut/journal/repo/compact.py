"""What prune does with journal batches: keep the blobs of live ones, drop the old ones.

A batch's blobs are as needed as a snapshot's: prune counts them as used, so
packs holding them are never marked while the batch exists.

Compaction (docs/architecture.md: "after a full, batches older than retention are
compacted away") drops a batch when nothing that retention
keeps can need it:

- every record in it is older than the source's journal retention (the
  profile's `incremental_retention`), so no moment inside the retention window
  falls in it; and
- a full snapshot of the same lineage that still exists (forget has applied
  the keep rules) is at or after its last record, and at or before the last
  record of the old batches: the earliest moment of the window restores from
  that snapshot (or a newer one) plus later records only.

Every kept snapshot restores by itself, and every moment in the window still
has its base snapshot and all the records after it. The newest batch of a
lineage is kept, so the lineage (and which snapshots belong to it) stays
known. Dropping deletes the journal object, like forget deletes a snapshot
record; the two-phase marking of unused packs then reclaims the blobs after
the safety margin. A `journal-compacted` record written first says how far
each lineage was compacted, so `journal verify` tells compaction from loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cleancut import clock
from cleancut.repository.records import JOURNAL_COMPACTED, write_record
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot

from .store import JOURNAL_PREFIX, Catalog, JournalBatch, all_batches, journal_seq_of, load_catalogs

RetentionFor = Callable[[str], float]


def compactable(
    catalog: Catalog, snapshots: list[Snapshot], now: datetime, retention: float
) -> list[JournalBatch]:
    """The batches of one source that compaction may drop (see the module docstring)."""
    cutoff = int(now.timestamp() * 1e9) - int(retention * 1e9)
    drop: list[JournalBatch] = []
    for lineage in catalog.lineages:
        old = [b for b in lineage.batches if b.last_ts < cutoff]
        if not old:
            continue
        edge = max(b.last_seq for b in old)
        fulls = [
            journal_seq_of(s) or 0
            for s in snapshots
            if s.name == catalog.name
            and s.is_full
            and journal_seq_of(s) is not None
            and (journal_seq_of(s) or 0) <= edge
            and catalog.lineage_of(s) is lineage
        ]
        if not fulls:
            continue
        horizon = max(fulls)
        newest = lineage.last
        drop += [b for b in old if b.last_seq <= horizon and b is not newest]
    return drop


@dataclass
class JournalPrune:
    """Prune's view of the journal: what is used, what compaction drops."""

    used: set[bytes] = field(default_factory=set)  # blobs of the batches that stay
    live: set[str] = field(default_factory=set)  # ids of the batches that stay
    known: set[str] = field(default_factory=set)  # ids of every batch this run saw
    drop: list[JournalBatch] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # objects that cannot be read
    missing: int = 0  # blobs of kept batches that are in no pack (damaged batches)

    def to_json(self) -> dict[str, object]:
        return {
            "batches_kept": len(self.live),
            "compacted": [
                {"id": b.id, "name": b.name, "first_seq": b.first_seq, "last_seq": b.last_seq}
                for b in self.drop
            ],
            "compacted_bytes": sum(b.bytes for b in self.drop),
            "damaged": self.damaged,
            "missing_blobs": self.missing,
        }


def plan_journal_prune(
    repo: Repository,
    snapshots: list[Snapshot],
    now: datetime,
    retention_for: RetentionFor,
) -> JournalPrune:
    """The blobs live batches use, and the batches to drop, judged against `snapshots`."""
    catalogs = load_catalogs(repo)
    plan = JournalPrune()
    plan.damaged = next(iter(catalogs.values())).damaged if catalogs else all_batches(repo)[1]
    for name, catalog in catalogs.items():
        drop = compactable(catalog, snapshots, now, retention_for(name))
        dropped = {b.id for b in drop}
        plan.drop += drop
        for batch in catalog.batches:
            plan.known.add(batch.id)
            if batch.id not in dropped:
                plan.live.add(batch.id)
                plan.used.update(bytes.fromhex(b) for b in batch.blobs)
    return plan


def drop_batches(repo: Repository, drop: list[JournalBatch]) -> None:
    """Record how far each lineage is compacted, then delete the objects."""
    upto: dict[tuple[str, str], list[JournalBatch]] = {}
    for batch in drop:
        upto.setdefault((batch.name, batch.lineage), []).append(batch)
    for (name, lineage), gone in sorted(upto.items()):
        write_record(
            repo,
            {
                "type": JOURNAL_COMPACTED,
                "name": name,
                "lineage": lineage,
                "upto": max(b.last_seq for b in gone),
                "batches": len(gone),
                "time": clock.iso(clock.now()),
            },
        )
    for batch in drop:
        repo.delete_object(JOURNAL_PREFIX + batch.id)


def new_batch_blobs(repo: Repository, known: set[str]) -> set[bytes]:
    """Blobs of batches committed since prune planned (prune looks again before it ends)."""
    found, _ = all_batches(repo)
    return {bytes.fromhex(b) for batch in found if batch.id not in known for b in batch.blobs}
