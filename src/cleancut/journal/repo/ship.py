"""Shipping: the local journal's new records into the repository, as one batch per run.

`ship` reads the records after the source's last shipped one (verified by the
journal reader, up to what the agent acknowledged), checks that the first of
them names the last shipped record's hash, and stores them as a batch
(journal_store.py). Commit order is the crash-safety rule: packs, then the
index segment, then the journal object; a ship killed at any instant leaves no
visible batch, and running it again continues from the repository's last
record. Then `<journal dir>/shipped` says how far the repository has this
journal, so the agent's writer may trim (Journal.trim keeps 5 minutes anyway).

When the journal cannot be continued (records lost locally, damage in the
middle, a restored agent's new journal), ship stores what is good, writes a
`journal-gap` record (the next backup of the source is then a full, and
status warns until it exists), and fails with exit 17 naming the range. Once
a full snapshot newer than the gap exists, ship starts a new lineage after
that snapshot's journal_seq: the repository never links records across a
point where their chain is broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from cleancut import clock
from cleancut.errors import CleancutError, ExitCode, PathNotFound
from cleancut.journal.frame import (
    ZERO_HASH,
    JournalError,
    JournalRecord,
    first_record,
    list_segments,
    read_segment,
)
from cleancut.journal.scan import (
    BROKEN_LINK,
    CORRUPT,
    GAP,
    INVALID,
    JournalProblem,
    JournalScan,
    read_journal,
    read_tail,
)
from cleancut.repository.records import JOURNAL_GAP, write_record
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot

from .pack import Packer
from .shipped import write_shipped
from .store import Catalog, JournalBatch, Lineage, journal_seq_of, load_catalog, seq_range

LOSS_KINDS = (CORRUPT, INVALID, BROKEN_LINK, GAP)
"""Damage after which records are missing or cannot be trusted: the chain cannot go on."""


@dataclass
class ShipResult:
    name: str
    directory: str
    lineage: str = ""
    new_lineage: bool = False  # this run started a lineage (after base_snapshot)
    base_snapshot: str = ""
    batches: list[JournalBatch] = field(default_factory=list)
    bytes_added: int = 0  # bytes of packs written (after deduplication)
    warnings: list[str] = field(default_factory=list)
    shipped_seq: int | None = None  # what <dir>/shipped says now (None: not written)
    error: str | None = None  # why ship stopped (also raised as ShipError)

    @property
    def records(self) -> int:
        return sum(b.records for b in self.batches)

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.batches)

    @property
    def first_seq(self) -> int | None:
        return self.batches[0].first_seq if self.batches else None

    @property
    def last_seq(self) -> int | None:
        return self.batches[-1].last_seq if self.batches else None

    @property
    def exit_code(self) -> int:
        """17 when ship stopped on damage or a fork (after storing what was good)."""
        return ExitCode.JOURNAL_DAMAGED if self.error else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "directory": self.directory,
            "lineage": self.lineage,
            "new_lineage": self.new_lineage,
            "base_snapshot": self.base_snapshot or None,
            "batches": [b.id for b in self.batches],
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "records": self.records,
            "bytes": self.bytes,
            "bytes_added": self.bytes_added,
            "shipped_seq": self.shipped_seq,
            "warnings": self.warnings,
            "error": self.error,
        }


class ShipError(JournalError):
    """Ship stored what was good, then stopped on damage or a fork (exit 17)."""

    def __init__(
        self, message: str, result: ShipResult, problem: JournalProblem | None = None
    ) -> None:
        super().__init__(message, problem)
        self.result = result


def ship(
    repo: Repository,
    name: str,
    journal_dir: str | Path,
    upto_seq: int | None = None,
) -> ShipResult:
    """Store the local journal's records after the last shipped one (up to `upto_seq`).

    Raises ShipError (exit 17) after storing what is good when the journal is
    damaged past the last shipped record or does not continue it; the error
    carries the ShipResult.
    """
    directory = Path(journal_dir)
    if not directory.is_dir():
        raise PathNotFound(f"no journal directory at {directory}")
    if upto_seq is not None and upto_seq < 0:
        raise ValueError("upto_seq cannot be negative")
    return _Ship(repo, name, directory, upto_seq).run()


def ship_what_is_good(
    repo: Repository, name: str, journal_dir: str | Path, upto_seq: int | None = None
) -> ShipResult:
    """`ship` for a command that reports what was stored even when ship stopped: a
    ShipError becomes its result, whose `error` and exit code (17) say why."""
    try:
        return ship(repo, name, journal_dir, upto_seq)
    except ShipError as exc:
        return exc.result


class _Ship:
    def __init__(self, repo: Repository, name: str, directory: Path, upto: int | None) -> None:
        self.repo = repo
        self.name = name
        self.directory = directory
        self.upto = upto
        self.catalog: Catalog = load_catalog(repo, name)
        self.result = ShipResult(name, str(directory))
        self._segments: dict[str, bytes] = {}

    def run(self) -> ShipResult:
        current = self.catalog.current
        if current is None:
            gate = self._gate(None)
            return self._start(after=journal_seq_of(gate) or 0 if gate else 0, gate=gate)
        self.result.lineage = current.id
        scan = read_journal(self.directory, current.last_seq, self.upto)
        records = iter(scan)
        first = next(records, None)
        if first is not None and first.prev.hex() != current.last_hash:
            shipped = f"record {current.last_seq}, the last shipped of {self.name}"
            if first.prev == ZERO_HASH:
                why = (
                    f"is a base record (a new journal, e.g. of a restored agent), not a "
                    f"continuation of {shipped}"
                )
            else:
                why = f"does not name {shipped}, as its predecessor"
            detail = f"record {first.seq} in {self.directory} {why}"
            return self._cannot_continue(first.seq, first.seq, detail, None, fork=True)
        if first is None and scan.stopped_by is None:
            fork = self._behind(current)
            if fork is not None:
                return self._cannot_continue(*fork, None, fork=True)
        if first is None and scan.stopped_by is not None:
            problem = scan.stopped_by
            if problem.kind in LOSS_KINDS:
                first_lost, last_lost = _lost(problem)
                return self._cannot_continue(
                    first_lost, last_lost, problem.message, problem, fork=False
                )
        self._store(
            first, records, current.id, current.base_seq, current.since, current.base_snapshot
        )
        return self._finish(scan, current.last_seq)

    # --- a lineage's first records ---------------------------------------------------

    def _start(self, after: int, gate: Snapshot | None) -> ShipResult:
        """Begin a lineage: the source's first, or a new one after the full snapshot `gate`."""
        scan = read_journal(self.directory, after, self.upto)
        records = iter(scan)
        first = next(records, None)
        if first is None:
            problem = scan.stopped_by
            if problem is not None and problem.kind in LOSS_KINDS:
                self.result.warnings += [w.message for w in scan.warnings]
                return self._fail(*_lost(problem), problem.message, problem)
            return self._finish(scan, after if gate is not None else None)
        lineage = first.hash.hex()
        since = ""
        if gate is not None:
            self.result.new_lineage, self.result.base_snapshot = True, gate.id
            current = self.catalog.current
            if current is not None:  # the source's first lineage owns every older snapshot
                since = self._relevant_gaps(current)[0]["time"]
        elif first.prev != ZERO_HASH and first.seq > 1:
            self.result.warnings.append(
                f"records before {first.seq} were never shipped (trimmed before the first ship): "
                "only snapshots reach them"
            )
        self.result.lineage = lineage
        base_seq = after if gate is not None else first.seq - 1
        self._store(first, records, lineage, base_seq, since, gate.id if gate else "")
        return self._finish(scan, after)

    # --- when the chain cannot go on ---------------------------------------------------

    def _cannot_continue(
        self,
        first: int,
        last: int,
        detail: str,
        problem: JournalProblem | None,
        *,
        fork: bool,
    ) -> ShipResult:
        """Start a new lineage if a full snapshot covers the break, else record the gap.

        The shipped file then says what the agent may trim: for damage after the
        last shipped record, everything up to it; for another journal (a fork),
        nothing, since none of its records is in the repository.
        """
        current = self.catalog.current
        gate = self._gate(current)
        if gate is not None:
            return self._start(after=journal_seq_of(gate) or 0, gate=gate)
        self._write_shipped(0 if fork or current is None else current.last_seq)
        return self._fail(first, last, detail, problem)

    def _fail(
        self, first: int, last: int, detail: str, problem: JournalProblem | None
    ) -> ShipResult:
        self._record_gap(first, last, detail)
        message = (
            f"journal of {self.name}: {detail}; records {seq_range(first, last)} cannot follow "
            "the shipped journal: the next backup of this source is a full, and ship starts a "
            "new lineage after it"
        )
        self.result.error = message
        raise ShipError(message, self.result, problem)

    def _relevant_gaps(self, current: Lineage | None) -> list[dict[str, Any]]:
        """The gap records written since the current lineage last shipped (oldest first)."""
        if current is None:
            return list(self.catalog.gaps)
        shipped = max(b.shipped for b in current.batches)
        return [g for g in self.catalog.gaps if str(g.get("time", "")) >= shipped]

    def _gate(self, current: Lineage | None) -> Snapshot | None:
        """The full snapshot, newer than every gap since, that a new lineage starts from."""
        gaps = self._relevant_gaps(current)
        if not gaps:
            return None
        newest = max(str(g["time"]) for g in gaps)
        fulls = [
            s
            for s in self.repo.snapshots()
            if s.name == self.name
            and s.is_full
            and s.time >= newest
            and journal_seq_of(s) is not None
        ]
        return max(fulls, key=lambda s: (s.time, s.id)) if fulls else None

    def _record_gap(self, first: int, last: int, detail: str) -> None:
        for gap in self._relevant_gaps(self.catalog.current):
            if (gap.get("from"), gap.get("to")) == (first, last):
                return  # the same break, already recorded and not yet resolved
        write_record(
            self.repo,
            {
                "type": JOURNAL_GAP,
                "name": self.name,
                "from": first,
                "to": last,
                "time": clock.iso(clock.now()),
                "detail": detail,
            },
        )

    def _behind(self, current: Lineage) -> tuple[int, int, str] | None:
        """A local journal that ends before, or differs at, the last shipped record."""
        try:
            tail = read_tail(self.directory)
        except JournalError:
            return None  # damage among older records: the scan after last_seq found none
        last = tail.last
        if last is None:
            return None  # nothing written yet: nothing to compare
        if last.seq < current.last_seq:
            ends = (
                f"the journal in {self.directory} ends at record {last.seq}, before the "
                f"repository's last record {current.last_seq} of {self.name}"
            )
            segments = list_segments(self.directory)
            head = first_record(segments[0][1]) if segments else None
            if head is not None and head.prev == ZERO_HASH and head.seq <= current.last_seq:
                return (
                    head.seq,
                    current.last_seq,
                    f"{ends}, and its record {head.seq} is a base record (a new journal, e.g. "
                    "of a restored agent)",
                )
            return (last.seq + 1, current.last_seq, f"{ends} (records were lost)")
        if last.seq == current.last_seq and last.hash.hex() != current.last_hash:
            return (
                last.seq,
                last.seq,
                f"record {last.seq} in {self.directory} is not the record {last.seq} shipped "
                f"for {self.name} (another journal)",
            )
        return None

    # --- storing --------------------------------------------------------------------------

    def _store(
        self,
        first: JournalRecord | None,
        rest: Any,
        lineage: str,
        base_seq: int,
        since: str,
        base_snapshot: str,
    ) -> None:
        if first is None:
            return
        packer = Packer(self.repo, self.name, (lineage, base_seq, since, base_snapshot))
        packer.add(first, self._raw(first))
        for rec in rest:
            packer.add(rec, self._raw(rec))
        packer.flush()
        self.result.batches += packer.written
        self.result.bytes_added += packer.bytes_added

    def _raw(self, rec: JournalRecord) -> bytes:
        """The record's bytes as the agent wrote them (the hash covers them, not a re-encoding)."""
        data = self._segments.get(rec.segment)
        if data is None:
            try:
                data = read_segment(self.directory / rec.segment)
            except FileNotFoundError:
                data = b""
            self._segments = {rec.segment: data}  # one segment at a time in memory
        raw = data[rec.offset : rec.offset + rec.size]
        if len(raw) != rec.size or blake3.blake3(raw[:-4]).digest() != rec.hash:
            raise CleancutError(
                f"{rec.segment} changed while it was shipped (record {rec.seq}); run ship again"
            )
        return raw

    def _finish(self, scan: JournalScan, fallback: int | None) -> ShipResult:
        """Write the shipped file, report warnings, and raise on damage past what was stored."""
        result = self.result
        result.warnings += [w.message for w in scan.warnings]
        shipped = result.last_seq if result.batches else fallback
        if shipped is not None:
            self._write_shipped(shipped)
        problem = scan.stopped_by
        if problem is None:
            return result
        good = ""
        if result.first_seq is not None and result.last_seq is not None:
            good = f"shipped records {seq_range(result.first_seq, result.last_seq)}; "
        if problem.kind in LOSS_KINDS:
            first, last = _lost(problem)
            self._record_gap(first, last, problem.message)
            message = (
                f"journal of {self.name}: {good}{problem.message}; the next backup of this "
                "source is a full"
            )
        else:
            message = f"journal of {self.name}: {good}{problem.message}"
        result.error = message
        raise ShipError(message, result, problem)

    def _write_shipped(self, seq: int) -> None:
        write_shipped(self.directory, seq)
        self.result.shipped_seq = seq


def _lost(problem: JournalProblem) -> tuple[int, int]:
    if problem.lost:
        return problem.lost
    seq = problem.seq if problem.seq is not None else (problem.last_good or 0) + 1
    return seq, seq
