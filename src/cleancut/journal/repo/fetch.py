"""Reading shipped journal records back: a batch's records, and a lineage's records in order.

The object of a batch is authenticated (sealed, named by its hash) and its
blobs are verified against their IDs as they load, so what comes back is what
ship stored. The checks here are the journal's own: every frame intact, the
sequence contiguous, each record naming its predecessor's hash, and the batch's
first and last hashes matching the records. Between batches, the same chain
continues; a batch that is missing (its object deleted or unreadable) shows
as a gap in the sequence. Problems are reported as the journal reader reports
them (JournalProblem), so restore says the same things for a damaged
repository as for a damaged local journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from cleancut.errors import CleancutError, IntegrityError
from cleancut.journal.frame import FrameError, JournalError, JournalRecord, decode_record
from cleancut.journal.scan import BROKEN_LINK, CORRUPT, GAP, JournalProblem
from cleancut.repository.pack import DATA
from cleancut.repository.repository import Repository

from .store import JOURNAL_PREFIX, Catalog, JournalBatch, Lineage, load_batch, seq_range


def where(batch: JournalBatch) -> str:
    return f"{JOURNAL_PREFIX}{batch.id[:12]}"


def batch_bytes(repo: Repository, batch: JournalBatch) -> bytes:
    """The framed records of a batch, every blob verified against its ID."""
    data = b"".join(repo.load_blob(bytes.fromhex(b), expected_type=DATA) for b in batch.blobs)
    if len(data) != batch.bytes:
        raise IntegrityError(
            f"{where(batch)}: its blobs hold {len(data)} bytes, the batch says {batch.bytes}"
        )
    return data


def batch_records(repo: Repository, batch: JournalBatch) -> list[JournalRecord]:
    """Every record of a batch, verified; IntegrityError naming the batch's range if not."""
    what = f"{where(batch)} (records {batch.range})"
    try:
        if load_batch(repo, batch.id) != batch:  # the catalog may come from the cache
            raise IntegrityError("the object differs from the catalog's copy")
        data = batch_bytes(repo, batch)
    except CleancutError as exc:
        raise IntegrityError(f"{what} is damaged: {exc}") from None
    records: list[JournalRecord] = []
    prev, pos, seq = bytes.fromhex(batch.prev_hash), 0, batch.first_seq
    while pos < len(data):
        try:
            rec = decode_record(data, pos, where(batch))
        except FrameError as err:
            raise IntegrityError(f"{what}: record {seq} at byte {pos}: {err.reason}") from None
        if rec.seq != seq:
            raise IntegrityError(f"{what}: record {rec.seq} where {seq} belongs")
        if rec.prev != prev:
            raise IntegrityError(f"{what}: record {seq} does not name its predecessor")
        records.append(rec)
        prev, pos, seq = rec.hash, pos + rec.size, seq + 1
    if not records or records[-1].seq != batch.last_seq:
        raise IntegrityError(f"{what}: holds records up to {seq - 1}")
    if prev.hex() != batch.last_hash:
        raise IntegrityError(f"{what}: its last record's hash is not the one the batch lists")
    if (records[0].ts_ns, records[-1].ts_ns) != (batch.first_ts, batch.last_ts):
        raise IntegrityError(f"{what}: record timestamps differ from the batch's")
    return records


class BatchScan:
    """Verified records of one lineage with after_seq < seq <= upto_seq, read from its batches.

    Iterate once. Afterwards `stopped_by` holds the problem that ended the
    scan early (a gap, a damaged batch, a broken link between batches), with
    the last good record and the range it concerns; `last_seq` is how far the
    records go. `error()` is the JournalError (exit 17) a command reports.

    With `accept_loss`, a missing or damaged batch is skipped when the batches
    around it say exactly which records are lost (their objects are
    authenticated, so what follows is the same lineage); the records after it
    are marked `after_loss` and replay applies them leniently. A broken link
    between batches, or records missing at the end, always stop.
    """

    def __init__(
        self,
        repo: Repository,
        catalog: Catalog,
        lineage: Lineage,
        after_seq: int,
        upto_seq: int,
        accept_loss: bool = False,
    ) -> None:
        self.repo = repo
        self.catalog = catalog
        self.lineage = lineage
        self.after_seq = after_seq
        self.upto_seq = upto_seq
        self.accept_loss = accept_loss
        self.stopped_by: JournalProblem | None = None
        self.problems: list[JournalProblem] = []  # the one that stopped, or those skipped
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.records = 0
        self.bytes = 0

    def error(self) -> JournalError | None:
        if self.stopped_by is None:
            return None
        return JournalError(problem_message(self.stopped_by), self.stopped_by)

    @property
    def lost(self) -> list[tuple[int, int]]:
        return [p.lost for p in self.problems if p.lost]

    def __iter__(self) -> Iterator[JournalRecord]:
        expected = self.after_seq + 1
        last_hash: bytes | None = None  # known once a batch ends at the record before `expected`
        loss = False
        for batch in self.lineage.batches:
            if expected > self.upto_seq:
                return
            if batch.last_seq < expected:
                if batch.last_seq == expected - 1 and not loss:
                    last_hash = bytes.fromhex(batch.last_hash)
                continue
            if batch.first_seq > expected:
                if not self._gap(expected, batch.first_seq - 1, batch):
                    return
                expected, last_hash, loss = batch.first_seq, None, True
            linked = last_hash is None or bytes.fromhex(batch.prev_hash) == last_hash
            if batch.first_seq == expected and not linked:
                detail = f"batch {batch.range} does not name record {expected - 1}"
                self._problem(BROKEN_LINK, expected, None, batch, detail, skippable=False)
                return
            try:
                records = batch_records(self.repo, batch)
            except CleancutError as exc:
                lost = (expected, min(batch.last_seq, self.upto_seq))
                if not self._problem(CORRUPT, expected, lost, batch, str(exc)):
                    return
                expected, last_hash, loss = batch.last_seq + 1, bytes.fromhex(batch.last_hash), True
                continue
            for rec in records:
                if rec.seq < expected:
                    continue  # an overlapping batch (two ships at once): each record once
                if last_hash is not None and rec.prev != last_hash:
                    detail = f"record {rec.seq} does not name record {expected - 1}"
                    self._problem(BROKEN_LINK, expected, None, batch, detail, skippable=False)
                    return
                yield replace(rec, after_loss=True) if loss else rec
                self.first_seq = self.first_seq or rec.seq
                self.last_seq = rec.seq
                self.records += 1
                self.bytes += rec.size
                expected, last_hash = rec.seq + 1, rec.hash
                if rec.seq >= self.upto_seq:
                    return
        if expected <= self.upto_seq:
            self._gap(expected, self.upto_seq, None)

    def _gap(self, first: int, last: int, batch: JournalBatch | None) -> bool:
        compacted = self.catalog.compacted.get(self.lineage.id, 0)
        if last <= compacted:
            why = "compacted by prune (older than the retention, covered by a full snapshot)"
        elif batch is None:
            why = f"not in the repository: the lineage's last batch ends at {self.lineage.last_seq}"
        else:
            why = "in no journal batch: a journal object is missing or damaged"
            if self.catalog.damaged:
                names = ", ".join(JOURNAL_PREFIX + d[:12] for d in self.catalog.damaged)
                why += f" (unreadable: {names})"
        detail = f"records {seq_range(first, last)} are {why}"
        return self._problem(GAP, first, (first, last), batch, detail, skippable=batch is not None)

    def _problem(
        self,
        kind: str,
        seq: int,
        lost: tuple[int, int] | None,
        batch: JournalBatch | None,
        detail: str,
        skippable: bool = True,
    ) -> bool:
        """Record a problem; True if the scan goes on past it (accept_loss)."""
        segment = where(batch) if batch is not None else ""
        problem = JournalProblem(kind, seq - 1, seq, lost, segment, 0, detail)
        if self.accept_loss and skippable:
            self.problems.append(replace(problem, skipped=True))
            return True
        self.problems.append(problem)
        self.stopped_by = problem
        return False


def problem_message(problem: JournalProblem) -> str:
    """One line for damage in the repository's journal (no byte offsets: batches are whole)."""
    at = f" in {problem.segment}" if problem.segment else ""
    good = f"last good record {problem.last_good}" if problem.last_good else "no good record"
    lost = ""
    if problem.lost:
        lost = f"; records {seq_range(*problem.lost)} not restored"
    kind = problem.kind.replace("_", " ")
    return f"repository journal {kind}: record {problem.seq}{at}: {problem.detail} ({good}{lost})"
