"""Restore a journaling source to a point: the base snapshot, then its records replayed.

The snapshot is restored first (restorer/restore.py), then the records after its
journal_seq, up to the point, are read from the repository's batches
(journal/repo/fetch.py) and applied with the journal's own replayer
(journal/replay.py), each record whole or not at all.

Replay needs the target to be exactly the snapshot's state, so the target
must be empty (or new). Progress is kept in a replay marker in the local cache
directory, keyed by the target (path and inode) and the snapshot: a restore
killed during the replay is finished by running the same command again (the
snapshot is not restored again, the interrupted record is completed, the rest
follow). The marker is removed when the replay ends.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cleancut.errors import UsageError
from cleancut.journal.replay import Replayer, read_marker
from cleancut.journal.scan import JournalProblem
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot, snapshot_at
from cleancut.restorer.restore import Restorer, RestoreResult

from .fetch import BatchScan, batch_records, problem_message
from .point import PointPlan, plan_point
from .store import Catalog, load_catalog, seq_range


@dataclass
class PointReplay:
    """What replay did on top of the base snapshot."""

    base_seq: int
    target_seq: int  # the point asked for
    reached_seq: int  # where the target is now
    records: int = 0
    bytes: int = 0  # data bytes written by puts and appends
    first_seq: int | None = None
    skipped: int = 0  # records the marker showed already applied (a resumed restore)
    lossy: list[str] = field(default_factory=list)  # operations bent after a loss
    problems: list[JournalProblem] = field(default_factory=list)
    stopped_by: JournalProblem | None = None

    @property
    def lost(self) -> list[tuple[int, int]]:
        return [p.lost for p in self.problems if p.lost]

    @property
    def error(self) -> str | None:
        return problem_message(self.stopped_by) if self.stopped_by else None

    def to_json(self) -> dict[str, Any]:
        return {
            "base_seq": self.base_seq,
            "target_seq": self.target_seq,
            "reached_seq": self.reached_seq,
            "replayed": (
                {"first": self.first_seq, "last": self.reached_seq}
                if self.first_seq is not None
                else None
            ),
            "records": self.records,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "lost": [{"first": a, "last": b} for a, b in self.lost],
            "lossy": self.lossy,
            "error": self.error,
        }


@dataclass
class PointRestore:
    snapshot: Snapshot
    replay: PointReplay
    restore: RestoreResult | None  # None: resumed (the snapshot was restored by an earlier run)

    @property
    def resumed(self) -> bool:
        return self.restore is None


def replay_from_repository(
    repo: Repository,
    catalog: Catalog,
    plan: PointPlan,
    target: Path,
    *,
    accept_loss: bool = False,
    marker: Path | None = None,
) -> PointReplay:
    """Apply the plan's records to `target`, which reflects record plan.base_seq.

    Stops at the last good record on damage (`stopped_by`); with accept_loss
    goes past missing or damaged batches whose range is known (`problems`).
    Replaying again with the same marker does nothing: the marker says the
    records are applied.
    """
    result = PointReplay(plan.base_seq, plan.upto_seq, plan.base_seq)
    if plan.lineage is None or plan.upto_seq <= plan.base_seq:
        return result
    scan = BatchScan(repo, catalog, plan.lineage, plan.base_seq, plan.upto_seq, accept_loss)
    with Replayer(target, marker) as replayer:
        replayer.start_after(plan.base_seq)
        for record in scan:
            replayer.apply(record)
        done = replayer.result
        result.reached_seq = replayer.applied_seq or plan.base_seq
    result.records, result.bytes, result.skipped = done.records, done.bytes, done.skipped
    result.first_seq = done.first_seq
    result.lossy = list(done.lossy)
    result.problems = list(scan.problems)
    result.stopped_by = scan.stopped_by
    return result


def plan_restore(
    repo: Repository, name: str, seq: int | None = None, at: datetime | None = None
) -> tuple[Catalog, PointPlan]:
    """The point's plan; a moment before the source's journal gives a plain snapshot."""
    catalog = load_catalog(repo, name)
    plan = plan_point(catalog, repo.snapshots(), seq, at, lambda b: batch_records(repo, b))
    if plan is None:
        assert at is not None
        snap = snapshot_at(repo.snapshots(), at, name)
        seq_of = (snap.capture or {}).get("journal_seq")
        base = seq_of if isinstance(seq_of, int) and not isinstance(seq_of, bool) else 0
        plan = PointPlan(snap, base, base, None)
    return catalog, plan


def has_journal(repo: Repository, name: str | None) -> bool:
    """Whether the source has journal batches (so --at replays instead of picking a snapshot)."""
    return name is not None and load_catalog(repo, name).current is not None


def restore_to_point(
    repo: Repository,
    name: str,
    target: Path,
    seq: int | None = None,
    at: datetime | None = None,
    *,
    accept_loss: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> PointRestore:
    """Restore the base snapshot into an empty `target`, then replay up to the point."""
    catalog, plan = plan_restore(repo, name, seq, at)
    snapshot = repo.load_snapshot(plan.snapshot.id)  # authenticated again, not the cache's
    marker = _marker_path(repo, target, snapshot) if target.is_dir() else None
    resumed = marker is not None and marker.exists()
    if resumed:
        assert marker is not None
        state = read_marker(marker)
        if state is not None and state[0] > plan.upto_seq:
            raise UsageError(
                f"{target} already reflects record {state[0]}, past {plan.upto_seq}: "
                "restore into an empty directory"
            )
    elif target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target} is not empty: replaying the journal needs exactly the snapshot's "
            "state; restore into an empty or new directory"
        )
    restored: RestoreResult | None = None
    if not resumed:
        restored = Restorer(repo, snapshot, target, [], on_bytes).run()
        if restored.damaged or restored.refused or restored.errors:
            # Records written against the snapshot's state cannot be applied to part of it.
            return PointRestore(
                snapshot, PointReplay(plan.base_seq, plan.upto_seq, plan.base_seq), restored
            )
        marker = _marker_path(repo, target, snapshot)
        marker.unlink(missing_ok=True)  # a stale one (a reused inode) is not this restore's
    assert marker is not None
    replay = replay_from_repository(
        repo, catalog, plan, target, accept_loss=accept_loss, marker=marker
    )
    marker.unlink(missing_ok=True)  # the replay ended (a crash before this line resumes)
    return PointRestore(snapshot, replay, restored)


def _marker_path(repo: Repository, target: Path, snapshot: Snapshot) -> Path:
    """The replay marker of one (target, snapshot), in the local cache (never in the target)."""
    st = os.stat(target)
    key = f"{target.resolve()}\0{st.st_dev}:{st.st_ino}\0{snapshot.id}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    directory = repo.local_dir / "replay"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory / f"{digest}.applied"


def lost_text(replay: PointReplay) -> str:
    """The records a lossy restore does not have, for one line of output."""
    return ", ".join(seq_range(a, b) for a, b in replay.lost)
