"""Prune: give back the space of packs that no snapshot needs, without racing a backup.

Backups take no lock, so prune cannot know that one is running. Every decision
rests on one assumption instead, the safety margin (default 1 h):

    A backup writes its snapshot record within the margin of opening the
    repository (that is, of loading the index it deduplicates against).

The margin must also cover the clock skew between the hosts that run prune (the
times compared are written by one prune run and read by a later one).

Deletion is two-phase (docs/architecture.md: "Deletion is two-phase"), and every decision is
recomputed from the snapshots that exist at that moment:

  seen    Each prune run (and each forget that deleted something) records which
          index segments exist, with the time, in a prune-mark record. A pack in
          a segment seen at T existed at T: the backup that wrote it opened the
          repository before T, so by T + margin it has committed or died.
  mark    A pack that no snapshot needs, in a segment seen at least a margin ago,
          is recorded in the prune-mark record with its index entries, then taken
          out of the index: the segments listing it are replaced by new ones
          that do not (new segment durable first, then the old ones deleted).
          A backup that opens the repository after that cannot deduplicate
          against it. A pack that no index lists (a crashed backup's) is only
          recorded: nothing deduplicates against an unindexed pack.
  sweep   A marked pack whose mark is at least a margin old, that no index lists
          again and that no snapshot existing now needs, is deleted. A backup
          still running opened the repository after the mark, so it cannot be
          using the pack; one that opened before it has committed by now, and
          its snapshot is part of the recomputed usage.

A backup that opened the repository just before a mark may still deduplicate
against a marked pack and commit a snapshot that needs it. Every run therefore
reads marked packs as if they were indexed, re-indexes the ones a snapshot
needs, and never deletes those; it also looks once more right after it marks.
Until that re-indexing, `check` reports such a snapshot's blobs as in no index
segment. Packs whose needed blobs fill less than `repack_below` percent of them
are repacked: the needed blobs are copied into new packs (indexed first), and
the old packs are then marked and swept like any other.

One prune at a time: a run that changes anything holds the lock object
`locks/prune` (plaintext JSON naming its holder; it expires unless refreshed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cleancut import clock
from cleancut.clock import from_iso, iso
from cleancut.errors import CleancutError, IntegrityError, NoSpace, ObjectNotFound
from cleancut.journal.repo.compact import (
    JournalPrune,
    RetentionFor,
    drop_batches,
    new_batch_blobs,
    plan_journal_prune,
)
from cleancut.repository.cache import BlobLocation
from cleancut.repository.compress import decompress
from cleancut.repository.crypto import content_hash
from cleancut.repository.index import IndexSegment, PackRecord

# Lock and remove_locks: re-exported for cli/commands/unlock.py until it imports them
# from cleancut.repository.locks.
from cleancut.repository.locks import HeldLock
from cleancut.repository.locks import Lock as Lock
from cleancut.repository.locks import remove_locks as remove_locks
from cleancut.repository.pack import PackBuilder, blob_aad, pack_sealer, parse_header
from cleancut.repository.records import compact_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.settings.profiles import get_profile

from .mark import Mark, MarkState, load_state, save_state
from .view import ReadView, locations, used_blobs

DEFAULT_SAFETY_MARGIN = 3600.0
DEFAULT_REPACK_BELOW = 50.0
REWRITE_SEGMENT_PACKS = 1024  # packs per index segment when prune replaces segments


# --- the plan and its report -----------------------------------------------------


@dataclass
class PackNote:
    pack_id: str
    size: int
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pack": self.pack_id, "size": self.size}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class PruneReport:
    now: str
    safety_margin: float
    repack_below: float
    dry_run: bool
    deleted: list[PackNote] = field(default_factory=list)  # swept: gone now
    marked: list[PackNote] = field(default_factory=list)  # taken out of the index now
    marked_unindexed: list[PackNote] = field(default_factory=list)  # no index lists them
    repacked: list[PackNote] = field(default_factory=list)  # sparse: needed blobs copied
    new_packs: list[PackNote] = field(default_factory=list)  # written by the repack
    reindexed: list[PackNote] = field(default_factory=list)  # marked, but a snapshot needs it
    unmarked: list[PackNote] = field(default_factory=list)  # marked, but indexed again
    waiting: list[PackNote] = field(default_factory=list)  # marked, margin not over yet
    too_new: list[PackNote] = field(default_factory=list)  # unused, segment seen too recently
    segments_seen: int = 0  # segments this run saw for the first time
    segments_written: list[str] = field(default_factory=list)
    segments_deleted: list[str] = field(default_factory=list)
    snapshots: int = 0
    next_run: str | None = None  # when a prune can act on what waits now
    journal: dict[str, Any] = field(default_factory=dict)  # batches kept, compacted, damaged
    reserve_used: int = 0  # bytes of the reserve released because the filesystem was full
    reserve_bytes: int = 0  # the reserve after the run (0: none, or not a local repository)
    records_deleted: int = 0  # old operational records nothing reads any more

    def to_json(self) -> dict[str, Any]:
        def notes(items: list[PackNote]) -> dict[str, Any]:
            return {
                "count": len(items),
                "bytes": sum(n.size for n in items),
                "packs": [n.to_json() for n in items],
            }

        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "safety_margin_s": self.safety_margin,
            "repack_below_percent": self.repack_below,
            "snapshots": self.snapshots,
            "deleted": notes(self.deleted),
            "marked": notes(self.marked),
            "marked_unindexed": notes(self.marked_unindexed),
            "repacked": notes(self.repacked),
            "new_packs": notes(self.new_packs),
            "reindexed": notes(self.reindexed),
            "unmarked": notes(self.unmarked),
            "waiting": notes(self.waiting),
            "too_new": notes(self.too_new),
            "segments_seen": self.segments_seen,
            "segments_written": self.segments_written,
            "segments_deleted": self.segments_deleted,
            "next_run": self.next_run,
            "journal": self.journal,
            "reserve": {"used_bytes": self.reserve_used, "bytes": self.reserve_bytes},
            "records_deleted": self.records_deleted,
        }


@dataclass
class _Plan:
    """What one run found; `_execute` carries it out."""

    state: MarkState
    segment_ids: list[str]
    pack_segments: dict[str, list[str]]  # pack -> segments listing it (listed at the start)
    indexed: dict[str, PackRecord]
    later: set[str]  # segments that appeared while we planned
    later_packs: set[str]  # the packs they list
    snapshot_ids: set[str]
    needed: dict[str, set[bytes]]  # pack -> the needed blobs it is chosen to serve
    reindex: dict[str, PackRecord] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    hide: list[str] = field(default_factory=list)
    repack: list[str] = field(default_factory=list)
    unindexed: list[str] = field(default_factory=list)
    young: dict[str, str] = field(default_factory=dict)  # unused or sparse, seen too recently
    present: dict[str, int] = field(default_factory=dict)  # pack -> size, in data/
    journal: JournalPrune = field(default_factory=JournalPrune)


def _used_share(record: PackRecord, needed: set[bytes]) -> float:
    """The part of a pack's blob bytes that snapshots still need."""
    total = sum(e.length for e in record.entries)
    return sum(e.length for e in record.entries if e.id in needed) / total if total else 1.0


def _index_view(
    segments: dict[str, IndexSegment],
) -> tuple[dict[str, PackRecord], dict[str, list[str]], dict[bytes, str]]:
    """Packs by id, the segments listing each, and one holder per blob: the first copy
    in segment order (a blob stored twice by concurrent backups needs only one)."""
    indexed: dict[str, PackRecord] = {}
    pack_segments: dict[str, list[str]] = {}
    holder: dict[bytes, str] = {}
    for sid in sorted(segments):
        for record in segments[sid].packs:
            pack_segments.setdefault(record.pack_id, []).append(sid)
            if record.pack_id not in indexed:
                indexed[record.pack_id] = record
                for e in record.entries:
                    holder.setdefault(e.id, record.pack_id)
    return indexed, pack_segments, holder


class Pruner:
    """One prune run: plan from what exists now, then (unless a dry run) act under the lock."""

    def __init__(
        self,
        repo: Repository,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        repack_below: float = DEFAULT_REPACK_BELOW,
        journal_retention: RetentionFor | None = None,
    ) -> None:
        """journal_retention: a source's journal retention in seconds (its profile's
        incremental_retention); by default the repository profile's, for every source."""
        self.repo = repo
        self.margin = safety_margin
        self.repack_below = repack_below
        self.journal_retention = journal_retention or _repository_retention(repo)
        self.now = clock.now()
        self.lock: HeldLock | None = None
        self._found_unindexed: dict[str, PackRecord] = {}

    def run(self, dry_run: bool = False) -> PruneReport:
        report = PruneReport(iso(self.now), self.margin, self.repack_below, dry_run)
        if dry_run:
            self._report(self._plan(), report)
            return report
        try:
            self._locked_run(report)
        except NoSpace as exc:
            # A full filesystem: free the reserve, then run again, as after a crash, in
            # the room it leaves; no repack (it writes new packs before it frees any).
            freed = self.repo.release_reserve()
            if not freed:
                raise NoSpace(
                    f"{exc}; the repository holds no prune reserve: free some space on "
                    "its filesystem (outside the repository) and run prune again"
                ) from exc
            report = PruneReport(iso(self.now), self.margin, 0.0, dry_run, reserve_used=freed)
            self.repack_below = 0.0
            self._locked_run(report)
        report.reserve_bytes = self.repo.refill_reserve()
        return report

    def _locked_run(self, report: PruneReport) -> None:
        self.lock = self.repo.acquire_lock("prune")
        try:
            plan = self._plan()
            self._report(plan, report)
            self._execute(plan, report)
            snapshots = {s.id for s in self.repo.snapshots()}
            report.records_deleted = compact_records(self.repo, self.now, snapshots)
        finally:
            self.lock.release()
            self.lock = None

    # --- planning -----------------------------------------------------------

    def _due(self, when: str) -> bool:
        return (self.now - from_iso(when)).total_seconds() >= self.margin

    def _load_segments(self, ids: Iterable[str]) -> dict[str, IndexSegment]:
        out = {}
        for sid in ids:
            try:
                out[sid] = self.repo.load_segment(sid)
            except ObjectNotFound:
                continue  # replaced while we listed
            except IntegrityError as exc:
                raise IntegrityError(
                    f"prune stopped before changing anything: {exc}; "
                    "run 'cleancut repair index' first"
                ) from exc
        return out

    def _snapshots(self) -> list[Snapshot]:
        """Every snapshot that exists now, each record read and authenticated again."""
        snaps = []
        for sid in self.repo.snapshot_ids():
            try:
                snaps.append(self.repo.load_snapshot(sid))
            except ObjectNotFound:
                continue  # forgotten while we listed
            except CleancutError as exc:
                raise IntegrityError(
                    f"prune stopped before changing anything: snapshot {sid[:12]}: {exc}; "
                    "prune cannot tell what a damaged snapshot needs (run 'cleancut check')"
                ) from exc
        return snaps

    def _unindexed_records(self, known: set[str]) -> Callable[[], dict[bytes, BlobLocation]]:
        """Headers of packs that no index lists: read only if a snapshot needs a blob that
        is nowhere else (a mark interrupted between the index change and its record)."""

        def load() -> dict[bytes, BlobLocation]:
            found: list[PackRecord] = []
            for pid, _size in self.repo.pack_sizes().items():
                if pid in known:
                    continue
                try:
                    data = self.repo.read_pack(pid)
                    if content_hash(data) != pid:
                        continue
                    salt, entries = parse_header(self.repo.keys, data, f"pack {pid[:12]}")
                except CleancutError:
                    continue  # damaged or gone: it cannot serve a blob
                found.append(PackRecord(pid, salt, len(data), entries))
            self._found_unindexed = {r.pack_id: r for r in found}
            return locations(found)

        return load

    def _plan(self) -> _Plan:
        repo = self.repo
        # Segments before snapshots: what an index lists is judged against every
        # snapshot committed by then.
        segment_ids = repo.segment_ids()
        segments = self._load_segments(segment_ids)
        repo.sync_cache()
        if repo.warnings:
            raise IntegrityError(
                f"prune stopped before changing anything: {repo.warnings[0]}; run 'cleancut check'"
            )
        state = load_state(repo)
        snapshots = self._snapshots()

        indexed, pack_segments, holder = _index_view(segments)
        hidden = {
            pid: m.record
            for pid, m in state.marks.items()
            if m.record is not None and pid not in indexed
        }
        known = set(indexed) | set(hidden)
        view = ReadView(repo, locations(hidden.values()), self._unindexed_records(known))
        used = used_blobs(view, snapshots, self.lock.refresh if self.lock else None)
        # Journal batches use blobs too; compaction drops the old ones (journal_compact.py).
        journal = plan_journal_prune(repo, snapshots, self.now, self.journal_retention)
        journal_only = journal.used - used
        used |= journal.used

        # After the snapshots: packs and segments that appear from here on are left alone.
        present = repo.pack_sizes()
        later_ids = [sid for sid in repo.segment_ids() if sid not in segments]
        later_segments = self._load_segments(later_ids)
        later_packs = {p.pack_id for seg in later_segments.values() for p in seg.packs}
        later_blobs = {
            e.id for seg in later_segments.values() for p in seg.packs for e in p.entries
        }

        plan = _Plan(
            state,
            sorted(segments),
            pack_segments,
            indexed,
            set(later_segments),
            later_packs,
            {s.id for s in snapshots},
            {},
            present=present,
            journal=journal,
        )
        missing = 0
        for blob in used:
            pid = holder.get(blob)
            if pid is not None:
                plan.needed.setdefault(pid, set()).add(blob)
                continue
            if blob in later_blobs:
                continue
            loc = view.find(blob)
            if loc is None:
                if blob in journal_only:
                    journal.missing += 1  # a damaged batch: 'journal verify' names it
                else:
                    missing += 1
                continue
            plan.reindex[loc.pack_id] = (
                hidden.get(loc.pack_id) or self._found_unindexed[loc.pack_id]
            )
        if missing:
            raise IntegrityError(
                f"prune stopped before changing anything: {missing} blob(s) that snapshots "
                "need are in no pack; run 'cleancut check' to see which snapshots are damaged"
            )

        self._decide(plan)
        return plan

    def _decide(self, plan: _Plan) -> None:
        """Sweep what is due, mark (or repack) what is old enough, note what is too new."""
        state, indexed, present = plan.state, plan.indexed, plan.present
        for pid, mark in state.marks.items():
            if pid in indexed or pid in plan.later_packs or pid in plan.reindex:
                continue  # reported as unmarked / reindexed
            if pid in present and self._due(mark.marked):
                plan.delete.append(pid)

        for pid, record in indexed.items():
            seen = [state.seen[s] for s in plan.pack_segments[pid] if s in state.seen]
            first_seen = min(seen) if seen else None
            if pid in plan.needed:
                sparse = (
                    self.repack_below > 0
                    and pid in present
                    and _used_share(record, plan.needed[pid]) * 100 < self.repack_below
                )
                if not sparse:
                    continue
            if first_seen is None or not self._due(first_seen):
                plan.young[pid] = first_seen or ""  # a running backup may be writing it
            elif pid in plan.needed:
                plan.repack.append(pid)
            else:
                plan.hide.append(pid)

        marked_or_back = set(state.marks) | set(plan.reindex)
        plan.unindexed = sorted(
            pid
            for pid in present
            if pid not in indexed and pid not in plan.later_packs and pid not in marked_or_back
        )

    def _report(self, plan: _Plan, report: PruneReport) -> None:
        size = plan.present.get
        indexed = plan.indexed
        state = plan.state
        report.snapshots = len(plan.snapshot_ids)
        report.journal = plan.journal.to_json()
        for pid in sorted(plan.delete):
            report.deleted.append(PackNote(pid, state.marks[pid].size, state.marks[pid].marked))
        for pid in sorted(plan.hide):
            report.marked.append(PackNote(pid, size(pid, indexed[pid].size)))
        for pid in plan.unindexed:
            report.marked_unindexed.append(PackNote(pid, size(pid, 0)))
        for pid in sorted(plan.repack):
            share = _used_share(indexed[pid], plan.needed[pid])
            report.repacked.append(PackNote(pid, size(pid, indexed[pid].size), f"{share:.0%} used"))
        for pid in sorted(plan.reindex):
            report.reindexed.append(PackNote(pid, plan.reindex[pid].size))
        next_times: list[datetime] = []
        margin = timedelta(seconds=self.margin)
        for pid, mark in sorted(state.marks.items()):
            if pid in indexed or pid in plan.later_packs:
                report.unmarked.append(PackNote(pid, mark.size))
            elif pid in plan.present and pid not in plan.reindex and pid not in plan.delete:
                report.waiting.append(PackNote(pid, mark.size, mark.marked))
                next_times.append(from_iso(mark.marked) + margin)
        for pid, first_seen in sorted(plan.young.items()):
            report.too_new.append(PackNote(pid, size(pid, indexed[pid].size), first_seen))
            next_times.append(from_iso(first_seen) + margin if first_seen else self.now + margin)
        if plan.hide or plan.repack or plan.unindexed:
            next_times.append(self.now + margin)
        report.segments_seen = sum(
            1 for sid in [*plan.segment_ids, *plan.later] if sid not in state.seen
        )
        report.next_run = iso(min(next_times)) if next_times else None

    # --- acting -------------------------------------------------------------------

    def _execute(self, plan: _Plan, report: PruneReport) -> None:
        assert self.lock is not None
        repo = self.repo
        state = plan.state
        # 0. Compaction: journal objects go like forgotten snapshot records; their blobs
        # are then unused, and marked and swept below like any other.
        if plan.journal.drop:
            self.lock.check()
            drop_batches(repo, plan.journal.drop)
        # 1. Put back what a snapshot needs, and write the repacked blobs; indexed first.
        new_records = self._repack(plan) if plan.repack else []
        report.new_packs = [PackNote(r.pack_id, r.size) for r in new_records]
        additions = list(plan.reindex.values()) + new_records
        if additions:
            sid = repo.write_segment(IndexSegment(additions))
            report.segments_written.append(sid)
            state.seen[sid] = iso(clock.now())
        for pid in plan.reindex:
            state.marks.pop(pid, None)
        # 2. Mark: take unused and repacked packs out of the index.
        hide = set(plan.hide) | set(plan.repack)
        if hide:
            self._replace_segments(plan, hide, report)
            marked_at = iso(clock.now())  # after the old segments are gone
            for pid in sorted(hide):
                record = plan.indexed[pid]
                state.marks[pid] = Mark(pid, marked_at, plan.present.get(pid, record.size), record)
        unindexed_at = iso(clock.now())
        for pid in plan.unindexed:
            state.marks[pid] = Mark(pid, unindexed_at, plan.present[pid], None)
        # 3. Sweep: delete what was marked at least a margin ago and is still unneeded.
        for pid in plan.delete:
            self.lock.check()
            repo.delete_pack(pid)
            state.marks.pop(pid, None)
        again = [p for p in state.marks if p in plan.indexed or p in plan.later_packs]
        for pid in again:
            if pid not in hide:
                del state.marks[pid]  # indexed again (repair index): alive, not ours to delete
        for pid in [p for p in state.marks if p not in plan.present and p not in hide]:
            del state.marks[pid]  # gone already
        # 4. Look again: a backup may have committed, since we listed, a snapshot that
        # needs a pack just taken out of the index.
        if hide:
            self._recheck(plan, report)
        # 5. Remember which segments exist now, then record the whole state in one record.
        present = repo.segment_ids()
        seen_at = iso(clock.now())
        state.seen = {sid: state.seen.get(sid, seen_at) for sid in present}
        save_state(repo, state, clock.now())
        repo.sync_cache()

    def _replace_segments(self, plan: _Plan, hide: set[str], report: PruneReport) -> None:
        """Write segments listing the survivors of every segment that lists a hidden
        pack, then delete those segments. Seen time of the new ones: the latest of the
        replaced (each surviving pack existed by then)."""
        repo = self.repo
        affected = sorted({sid for pid in hide for sid in plan.pack_segments[pid]})
        in_affected = set(affected)
        survivors = {
            pid: plan.indexed[pid]
            for pid, sids in plan.pack_segments.items()
            if pid not in hide and in_affected.intersection(sids)
        }
        seen_times = [plan.state.seen.get(sid, iso(self.now)) for sid in affected]
        seen = max(seen_times) if seen_times else iso(self.now)
        records = [survivors[pid] for pid in sorted(survivors)]
        for start in range(0, len(records), REWRITE_SEGMENT_PACKS):
            chunk = records[start : start + REWRITE_SEGMENT_PACKS]
            sid = repo.write_segment(IndexSegment(chunk, supersedes=affected))
            report.segments_written.append(sid)
            plan.state.seen[sid] = seen
        for sid in affected:
            if self.lock is not None:
                self.lock.check()
            repo.delete_segment(sid)
            report.segments_deleted.append(sid)
            plan.state.seen.pop(sid, None)

    def _repack(self, plan: _Plan) -> list[PackRecord]:
        """Copy the needed blobs of sparse packs into new packs: decrypt, verify against
        the blob ID, and seal again under the new pack's key (payloads stay compressed)."""
        repo = self.repo
        keys = repo.keys
        builders: dict[int, PackBuilder] = {}
        written: list[PackRecord] = []

        def flush(blob_type: int) -> None:
            builder = builders.pop(blob_type)
            data = builder.finish()
            pack_id = content_hash(data)
            repo.write_pack(pack_id, data)
            written.append(PackRecord(pack_id, builder.salt, len(data), builder.entries))

        for pid in sorted(plan.repack):
            record = plan.indexed[pid]
            data = repo.read_pack(pid)
            sealer = pack_sealer(keys, record.salt)
            for e in record.entries:
                if e.id not in plan.needed[pid]:
                    continue
                what = f"blob {e.id.hex()[:12]} in pack {pid[:12]}"
                payload = sealer.open(
                    memoryview(data)[e.offset : e.offset + e.length], blob_aad(e.type, e.id), what
                )
                plain = decompress(payload, e.raw_length)
                if len(plain) != e.raw_length or keys.blob_id(plain) != e.id:
                    raise IntegrityError(f"{what} does not hash to its ID; nothing was deleted")
                builder = builders.get(e.type)
                if builder is None:
                    builder = builders[e.type] = PackBuilder(keys)
                builder.add_sealed(
                    e.type, e.id, builder.seal_blob(e.type, e.id, payload), len(plain)
                )
                if builder.size >= repo.config.pack_size:
                    flush(e.type)
            if self.lock:
                self.lock.refresh()
        for blob_type in sorted(builders):
            flush(blob_type)
        return written

    def _recheck(self, plan: _Plan, report: PruneReport) -> None:
        """Snapshots committed while this run planned were not in its usage: if one needs
        a pack the run just took out of the index, put the pack back at once (the window
        in which `check` would miss its blobs shrinks to this run's length)."""
        repo = self.repo
        repo.sync_cache()
        hidden = {pid: m.record for pid, m in plan.state.marks.items() if m.record is not None}
        view = ReadView(repo, locations(hidden.values()), dict)
        back: dict[str, PackRecord] = {}
        for blob in new_batch_blobs(repo, plan.journal.known):
            if repo.find_blob(blob) is None:
                loc = view.find(blob)
                if loc is not None:
                    back[loc.pack_id] = hidden[loc.pack_id]
        for sid in repo.snapshot_ids():
            if sid in plan.snapshot_ids:
                continue
            try:
                blobs = used_blobs(view, [repo.load_snapshot(sid)])
            except CleancutError:
                continue  # gone again, or damaged: the next run stops and says so
            for blob in blobs:
                if repo.find_blob(blob) is None:
                    loc = view.find(blob)
                    if loc is not None:
                        back[loc.pack_id] = hidden[loc.pack_id]
        if back:
            sid = repo.write_segment(IndexSegment(list(back.values())))
            report.segments_written.append(sid)
            plan.state.seen[sid] = iso(clock.now())
            for pid, record in back.items():
                plan.state.marks.pop(pid, None)
                report.reindexed.append(PackNote(pid, record.size, "needed by a new snapshot"))
                report.marked = [n for n in report.marked if n.pack_id != pid]
                report.repacked = [n for n in report.repacked if n.pack_id != pid]


def prune(
    repo: Repository,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
    repack_below: float = DEFAULT_REPACK_BELOW,
    dry_run: bool = False,
    journal_retention: RetentionFor | None = None,
) -> PruneReport:
    """Mark what no snapshot or journal batch needs, sweep what was marked at least a margin
    ago, and compact journal batches older than retention that a full snapshot covers."""
    return Pruner(repo, safety_margin, repack_below, journal_retention).run(dry_run)


def _repository_retention(repo: Repository) -> RetentionFor:
    """The repository profile's journal retention; an unknown profile compacts nothing."""
    try:
        seconds = get_profile(repo.config.profile).incremental_retention
    except ValueError:
        seconds = float("inf")
    return lambda _name: seconds
