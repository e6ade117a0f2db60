"""Verify a source's journal in the repository: every lineage a contiguous, linked chain.

Structure first: within each lineage the batches must cover every record from
its start (its base snapshot's record, or how far prune compacted it) to its
last, each batch naming the last record of the one before. A batch that is
missing, or whose object cannot be read, shows as a range no batch covers and
is reported with that range. With read_data every batch is read back: every
blob verified against its ID, every record's frame, sequence and hash link,
and the batch's own first and last hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cleancut.errors import CleancutError, ExitCode
from cleancut.repository.repository import Repository

from .fetch import batch_records, where
from .store import JOURNAL_PREFIX, Catalog, Lineage, load_catalog, seq_range


@dataclass
class JournalVerifyReport:
    name: str
    lineages: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    records: int = 0  # records read back (read_data)
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.JOURNAL_DAMAGED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "lineages": self.lineages,
            "batches": self.batches,
            "records": self.records,
            "bytes": self.bytes,
            "problems": self.problems,
            "notes": self.notes,
        }


def verify_journal(repo: Repository, name: str, read_data: bool = True) -> JournalVerifyReport:
    catalog = load_catalog(repo, name, cached=False)  # every object read and authenticated
    report = JournalVerifyReport(name)
    for oid in catalog.damaged:
        report.problems.append(
            f"{JOURNAL_PREFIX}{oid[:12]} cannot be read (damaged or tampered): its source "
            "and records are unknown"
        )
    for lineage in catalog.lineages:
        _verify_lineage(repo, catalog, lineage, read_data, report)
    if not catalog.lineages:
        report.notes.append(f"no journal batches of {name}")
    return report


def _verify_lineage(
    repo: Repository,
    catalog: Catalog,
    lineage: Lineage,
    read_data: bool,
    report: JournalVerifyReport,
) -> None:
    start = catalog.start_of(lineage)
    label = f"lineage {lineage.id[:12]}"
    report.lineages.append(
        {
            "lineage": lineage.id,
            "since": lineage.since or None,
            "base_seq": lineage.base_seq,
            "base_snapshot": lineage.base_snapshot or None,
            "first_seq": start,
            "last_seq": lineage.last_seq,
            "batches": len(lineage.batches),
        }
    )
    if start > lineage.base_seq + 1:
        report.notes.append(
            f"{label}: records {seq_range(lineage.base_seq + 1, start - 1)} were compacted"
        )
    expected, last_hash = start, None
    for batch in lineage.batches:
        report.batches += 1
        if batch.last_seq < expected:
            report.notes.append(
                f"{where(batch)} (records {batch.range}) is covered by other batches"
            )
        elif batch.first_seq > expected:
            report.problems.append(
                f"{label}: records {seq_range(expected, batch.first_seq - 1)} of {catalog.name} "
                "are in no batch (a journal object is missing or damaged)"
            )
        elif batch.first_seq == expected and last_hash not in (None, batch.prev_hash):
            report.problems.append(
                f"{where(batch)} (records {batch.range}) does not name record "
                f"{expected - 1} as its predecessor"
            )
        if read_data:
            try:
                records = batch_records(repo, batch)
            except CleancutError as exc:
                report.problems.append(str(exc))
            else:
                report.records += len(records)
                report.bytes += batch.bytes
        if batch.last_seq >= expected:
            expected, last_hash = batch.last_seq + 1, batch.last_hash
