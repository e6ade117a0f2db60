"""Reading a journal back: verified records in order, and damage reported as data.

`read_journal` yields only verified records, in order. A torn last record is
dropped with a warning; anything else (damage with intact records after it, a
broken hash link, a sequence gap, a repeated segment) stops the scan at the last
good record and is reported as data with the range it concerns. `read_tail` is
where a writer reopening its journal continues. docs/journal.md says exactly
what the reader guarantees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from cleancut.errors import PathNotFound

from .frame import (
    MAGIC,
    MIN_FRAME,
    SEGMENT_RE,
    SEGMENT_SUFFIX,
    FrameError,
    JournalError,
    JournalRecord,
    decode_record,
    list_segments,
    read_segment,
)


def _next_frame(buf: bytes, start: int, segment: str) -> tuple[int, JournalRecord | None] | None:
    """The next position at or after `start` holding an intact frame, and its record.

    The record is None when the frame is intact but its payload is invalid (the
    frame still counts: its checksum proves it was written as a record).
    """
    pos = buf.find(MAGIC, start)
    while pos != -1:
        try:
            return pos, decode_record(buf, pos, segment)
        except FrameError as err:
            if err.framed is not None:
                return pos, None
        pos = buf.find(MAGIC, pos + 1)
    return None


def _read_segment(path: Path) -> bytes:
    """A segment's bytes; one trimmed away since it was listed reads as empty (a gap)."""
    try:
        return read_segment(path)
    except FileNotFoundError:
        return b""

# --- problems --------------------------------------------------------------

TORN_TAIL = "torn_tail"  # a warning: nothing intact follows; the bytes are dropped
CORRUPT = "corrupt"  # bytes that are not an intact record, with intact records after them
INVALID = "invalid"  # an intact frame whose payload is not a valid record (forged, or a bug)
BROKEN_LINK = "broken_link"  # an intact record whose previous hash is not its predecessor's
GAP = "gap"  # sequence numbers missing between two intact records
DUPLICATE = "duplicate"  # a sequence number repeats or goes backwards (a copied segment)
MISNAMED = "misnamed"  # a warning: a segment's name does not give its first record's seq
BEFORE_RANGE = "before_range"  # a warning: damage only among records the caller did not ask for


@dataclass(frozen=True)
class JournalProblem:
    """What is wrong, where, and which sequence numbers it concerns."""

    kind: str
    last_good: int | None  # the last verified record before the problem (None: none yet)
    seq: int | None  # the sequence number expected where the problem starts
    lost: tuple[int, int] | None  # first and last sequence number missing, when known
    segment: str
    offset: int
    detail: str
    skipped: bool = False  # accept_loss went past it

    @property
    def message(self) -> str:
        at = f"{self.segment} at byte {self.offset}" if self.segment else "the journal"
        seq = f"record {self.seq}" if self.seq is not None else "a record"
        good = f"last good record {self.last_good}" if self.last_good else "no good record before"
        lost = ""
        if self.lost:
            first, last = self.lost
            lost = f"; records {first}..{last} lost" if last > first else f"; record {first} lost"
        if self.kind == TORN_TAIL:
            return f"journal: torn tail dropped: {seq} in {at}: {self.detail}"
        if self.kind in (MISNAMED, BEFORE_RANGE):
            return f"journal: {self.detail} ({at})"
        return f"journal {self.kind.replace('_', ' ')}: {seq} in {at}: {self.detail} ({good}{lost})"


class JournalScan:
    """A single pass over a journal that yields verified records and collects problems.

    Iterate it once; afterwards `warnings`, `problems`, `stopped_by` and
    `last_seq` describe what was found. `error()` turns a stop into the
    JournalError (exit 17) a command reports.
    """

    def __init__(
        self,
        directory: str | Path,
        after_seq: int = 0,
        upto_seq: int | None = None,
        accept_loss: bool = False,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise PathNotFound(f"no journal directory at {self.directory}")
        self.after_seq = after_seq
        self.upto_seq = upto_seq
        self.accept_loss = accept_loss
        self.warnings: list[JournalProblem] = []
        self.problems: list[JournalProblem] = []  # damage: the one that stopped, or those skipped
        self.stopped_by: JournalProblem | None = None
        self.first_seq: int | None = None  # first record yielded
        self.last_seq: int | None = None  # last record yielded: where a replay ends
        self.records = 0
        self.bytes = 0
        self._iterated = False
        self._last: int | None = None  # last record verified (yielded or before the range)
        self._last_hash: bytes | None = None  # its hash; None when the next link is unverifiable
        self._loss = False

    def __iter__(self) -> Iterator[JournalRecord]:
        if self._iterated:
            raise RuntimeError("a JournalScan is iterated once")
        self._iterated = True
        return self._scan()

    def error(self) -> JournalError | None:
        if self.stopped_by is None:
            return None
        return JournalError(self.stopped_by.message, self.stopped_by)

    def check(self) -> None:
        """Raise the scan's error, if it stopped on damage."""
        err = self.error()
        if err is not None:
            raise err

    # --- the pass ----------------------------------------------------------

    def _scan(self) -> Iterator[JournalRecord]:
        segs = self._segments()
        if not segs:
            return
        i, pos, data = 0, 0, _read_segment(segs[0][1])
        while True:
            if pos >= len(data):
                i += 1
                if i >= len(segs):
                    return
                pos, data = 0, _read_segment(segs[i][1])
                continue
            name = segs[i][1].name
            try:
                rec = decode_record(data, pos, name)
            except FrameError as err:
                resume = self._damage(segs, i, data, pos, err)
                if resume is None:
                    return
                i, pos, data = resume
                continue
            verdict = self._place(rec)
            if verdict == "stop":
                return
            if verdict == "take" and pos == 0 and rec.seq != segs[i][0]:
                self._misnamed(segs[i], rec)
            pos += rec.size
            if verdict == "skip" or rec.seq <= self.after_seq:
                continue
            if self.upto_seq is not None and rec.seq > self.upto_seq:
                return
            if self._loss:
                rec = replace(rec, after_loss=True)
            if self.first_seq is None:
                self.first_seq = rec.seq
            self.last_seq = rec.seq
            self.records += 1
            self.bytes += rec.size
            yield rec
            if self.upto_seq is not None and rec.seq >= self.upto_seq:
                return

    def _segments(self) -> list[tuple[int, Path]]:
        """Segments to read: those before the one holding `after_seq` are skipped unread."""
        segs = list_segments(self.directory)
        for entry in os.scandir(self.directory):
            if entry.name.endswith(SEGMENT_SUFFIX) and not SEGMENT_RE.match(entry.name):
                self.warnings.append(
                    JournalProblem(
                        MISNAMED,
                        None,
                        None,
                        None,
                        entry.name,
                        0,
                        f"ignored {entry.name}: not a segment name",
                    )
                )
        start = 0
        while start + 1 < len(segs) and segs[start + 1][0] <= self.after_seq:
            start += 1
        return segs[start:]

    def _place(self, rec: JournalRecord) -> str:
        """Check `rec` against the chain so far: "take", "skip" (a repeat) or "stop"."""
        last = self._last
        where = (rec.segment, rec.offset)
        if last is None:
            if self.after_seq and rec.seq > self.after_seq + 1:
                lost = (self.after_seq + 1, rec.seq - 1)
                self._stop(
                    GAP,
                    self.after_seq,
                    self.after_seq + 1,
                    lost,
                    where,
                    f"the journal's first record here is {rec.seq}",
                )
                return "stop"
        elif rec.seq == last + 1:
            if self._last_hash is not None and rec.prev != self._last_hash:
                detail = f"record {rec.seq} does not name record {last} as its predecessor"
                if rec.seq <= self.after_seq:
                    self._before_range(detail, where)
                else:
                    self._stop(BROKEN_LINK, last, rec.seq, None, where, detail)
                    return "stop"
        elif rec.seq <= last:
            detail = f"record {rec.seq} appears again after record {last}"
            if last <= self.after_seq:
                self._before_range(detail, where)
                return "skip"
            problem = JournalProblem(DUPLICATE, last, rec.seq, None, *where, detail)
            if not self.accept_loss:
                self._record_stop(problem)
                return "stop"
            if not self.problems or self.problems[-1].kind != DUPLICATE:
                self.problems.append(replace(problem, skipped=True))
            return "skip"
        else:
            lost = (last + 1, rec.seq - 1)
            detail = f"records {last + 1}..{rec.seq - 1} are missing before record {rec.seq}"
            if rec.seq <= self.after_seq + 1:
                self._before_range(detail, where)
            else:
                self._stop(GAP, last, last + 1, lost, where, detail)
                return "stop"
        self._last, self._last_hash = rec.seq, rec.hash
        return "take"

    def _damage(
        self, segs: list[tuple[int, Path]], i: int, data: bytes, pos: int, err: FrameError
    ) -> tuple[int, int, bytes] | None:
        """Classify bytes that are not an intact record; where to go on, or None to end."""
        name = segs[i][1].name
        expected = self._last + 1 if self._last is not None else (segs[i][0] if pos == 0 else None)
        if err.framed is not None:
            return self._invalid(name, i, data, pos, err, expected)
        found = _next_frame(data, pos + 1, name)
        j, p, next_data = i, 0, data
        if found is not None:
            p = found[0]
        else:
            for j in range(i + 1, len(segs)):
                next_data = _read_segment(segs[j][1])
                found = _next_frame(next_data, 0, segs[j][1].name)
                if found is not None:
                    p = found[0]
                    break
        if found is None:
            dropped = len(data) - pos
            self.warnings.append(
                JournalProblem(
                    TORN_TAIL,
                    self._last,
                    expected,
                    None,
                    name,
                    pos,
                    f"{err.reason}; {dropped} bytes dropped",
                )
            )
            return None
        rec = found[1]
        next_seq = rec.seq if rec is not None else None
        lost = None
        if expected is not None and next_seq is not None and next_seq > expected:
            lost = (expected, next_seq - 1)
        where_next = f"{segs[j][1].name} at byte {p}"
        detail = f"{err.reason}; the next intact record is {next_seq or 'invalid'} in {where_next}"
        problem = JournalProblem(CORRUPT, self._last, expected, lost, name, pos, detail)
        if (
            next_seq is not None
            and next_seq <= self.after_seq + 1
            and (self._last is None or next_seq > self._last)
        ):
            self._before_range(detail, (name, pos))
            self._last, self._last_hash = next_seq - 1, None
            return j, p, next_data
        if (
            self.accept_loss
            and rec is not None
            and self._safe(segs, i, pos, len(data), j, p, rec, expected)
        ):
            self.problems.append(replace(problem, skipped=True))
            if rec.seq != expected:
                self._loss = True
                self._last_hash = None
            self._last = rec.seq - 1
            return j, p, next_data
        self._record_stop(problem)
        return None

    def _invalid(
        self, name: str, i: int, data: bytes, pos: int, err: FrameError, expected: int | None
    ) -> tuple[int, int, bytes] | None:
        """An intact frame with an invalid payload: exactly one record is unusable."""
        assert err.framed is not None
        seq, digest, end = err.framed
        problem = JournalProblem(INVALID, self._last, seq, (seq, seq), name, pos, err.reason)
        if seq <= self.after_seq and (self._last is None or seq > self._last):
            self._before_range(err.reason, (name, pos))
            self._last, self._last_hash = seq, digest
            return i, end, data
        if self.accept_loss and (expected is None or seq == expected):
            self.problems.append(replace(problem, skipped=True))
            self._last, self._last_hash, self._loss = seq, digest, True
            return i, end, data
        self._record_stop(problem)
        return None

    def _safe(
        self,
        segs: list[tuple[int, Path]],
        i: int,
        pos: int,
        size_i: int,
        j: int,
        p: int,
        rec: JournalRecord,
        expected: int | None,
    ) -> bool:
        """Whether skipping to `rec` loses only records that lived in the damaged bytes.

        Resuming is safe when the records in between provably sat in the damaged
        bytes of this segment (or its end and nothing else): then exactly those
        are lost, and the chain after them is the same journal. A whole missing
        segment, a resync into a later segment's middle, or more lost records than
        the damaged bytes could hold is not that, so the scan stops.
        """
        if expected is None or rec.seq < expected:
            return False
        if rec.seq == expected:
            return self._last_hash is None or rec.prev == self._last_hash
        if j == i:
            damaged = p - pos
        elif j == i + 1 and p == 0 and rec.seq == segs[j][0]:
            damaged = size_i - pos
        else:
            return False
        return (rec.seq - expected) * MIN_FRAME <= damaged

    def _misnamed(self, seg: tuple[int, Path], rec: JournalRecord) -> None:
        self.warnings.append(
            JournalProblem(
                MISNAMED,
                self._last,
                rec.seq,
                None,
                seg[1].name,
                0,
                f"segment {seg[1].name} starts with record {rec.seq}",
            )
        )

    def _before_range(self, detail: str, where: tuple[str, int]) -> None:
        self.warnings.append(
            JournalProblem(
                BEFORE_RANGE,
                self._last,
                None,
                None,
                *where,
                f"ignored damage before record {self.after_seq + 1}: {detail}",
            )
        )

    def _stop(
        self,
        kind: str,
        last_good: int | None,
        seq: int | None,
        lost: tuple[int, int] | None,
        where: tuple[str, int],
        detail: str,
    ) -> None:
        self._record_stop(JournalProblem(kind, last_good, seq, lost, *where, detail))

    def _record_stop(self, problem: JournalProblem) -> None:
        self.problems.append(problem)
        self.stopped_by = problem


def read_journal(
    directory: str | Path,
    after_seq: int = 0,
    upto_seq: int | None = None,
    *,
    accept_loss: bool = False,
) -> JournalScan:
    """Verified records with after_seq < seq <= upto_seq, in order (lazily, as a JournalScan).

    `after_seq` is the state the caller already has: the first record yielded
    must be after_seq + 1 (a later one is a gap). With after_seq 0 the journal
    is read from its first record, whatever its number (trimmed or based).
    `accept_loss` goes past damage where that is safe; docs/journal.md says
    exactly when.
    """
    return JournalScan(directory, after_seq, upto_seq, accept_loss)


# --- the tail (for a writer reopening its journal) --------------------------


@dataclass
class JournalTail:
    """Where a writer continues: the last intact record and what follows it on disk."""

    last: JournalRecord | None  # None: the journal holds no record
    segment: Path | None  # the segment holding `last`
    good_end: int  # bytes of `segment` that hold whole records; the rest is torn
    torn: list[JournalProblem] = field(default_factory=list)  # what the writer drops, to warn
    dead: list[Path] = field(default_factory=list)  # later segments holding no intact record


def read_tail(directory: str | Path) -> JournalTail:
    """Find the last durable record, reading only the newest segments.

    Only a torn end (a crash mid-write: nothing intact after the damage) is
    returned for the writer to cut; damage with intact records after it, a
    broken link or a misnamed last segment is not something a writer may paper
    over, so it raises JournalError.
    """
    segs = list_segments(directory)
    tail = JournalTail(None, None, 0)
    for name_seq, path in reversed(segs):
        data = read_segment(path)
        pos, last = 0, None
        while pos < len(data):
            try:
                rec = decode_record(data, pos, path.name)
            except FrameError as err:
                if err.framed is not None or _next_frame(data, pos + 1, path.name) is not None:
                    raise JournalError(
                        f"journal {path}: damaged at byte {pos} ({err.reason}) with intact "
                        "records after it; a writer cannot continue it (check it with "
                        "read_journal, and move it aside)"
                    ) from None
                tail.torn.append(
                    JournalProblem(
                        TORN_TAIL,
                        last.seq if last else None,
                        last.seq + 1 if last else name_seq,
                        None,
                        path.name,
                        pos,
                        f"{err.reason} ({len(data) - pos} bytes dropped)",
                    )
                )
                break
            if last is None and rec.seq != name_seq:
                raise JournalError(f"journal {path}: segment starts with record {rec.seq}")
            if last is not None and (rec.seq != last.seq + 1 or rec.prev != last.hash):
                raise JournalError(f"journal {path}: record {rec.seq} does not follow {last.seq}")
            last, pos = rec, pos + rec.size
        if last is not None:
            tail.last, tail.segment, tail.good_end = last, path, pos
            return tail
        tail.dead.insert(0, path)
    return tail
