"""The journal: an append-only log of workspace mutations, how to verify it, how to replay it.

An agent that cannot pause writes every mutation to its journal before
applying it (src/cleancut/sdk/journal_writer.py). A backup then needs no quiet moment: the last
snapshot plus the journal replayed up to a sequence number is a consistent
workspace. This module is the journal's only definition shared by both sides,
so it knows nothing of agents: a journal is files of records, a record is a
group of operations on relative paths, and replay applies them to a directory.

docs/journal.md is the byte-level contract (precise enough for a second
implementation) and says exactly what the reader and replay guarantee. In short:

- A segment file `<first seq, 20 digits>.jnl` holds records back to back; each
  record is framed (magic, length, payload, checksum) and carries a contiguous
  sequence number, a timestamp and the BLAKE3 hash of the previous record.
- `read_journal` yields only verified records, in order. A torn last record is
  dropped with a warning; anything else (damage with intact records after it, a
  broken hash link, a sequence gap, a repeated segment) stops the scan at the
  last good record and is reported as data with the range it concerns.
- `replay` applies records to a directory, each one whole or not at all, and
  never outside it. Every operation is idempotent when re-run, and an optional
  marker file records progress operation by operation, so a replay killed at
  any instant is finished by running it again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import blake3

from cleancut import jsonparse
from cleancut.errors import CleancutError, ExitCode, IntegrityError, NoSpace, PathNotFound
from cleancut.fsio import filekind

JOURNAL_DAMAGED = ExitCode.JOURNAL_DAMAGED

MAGIC = b"CCJ1"
SEGMENT_SUFFIX = ".jnl"
ZERO_HASH = bytes(32)
"""The previous-record hash of a base record: seq 1, or the first record after `start_after`."""
MAX_PAYLOAD = 1 << 30
"""A record larger than 1 GiB is refused when written and read as damage."""
RESERVED_PREFIX = ".ccj-"

MIN_JOURNAL_WINDOW = 300
"""The rolling journal always covers at least the last 5 minutes (a profile may not shorten it)."""
_EXCL_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
)
"""Top-level names of this form in a target belong to replay (temporary files)."""

_FRAME_HEAD = struct.Struct("<4sI")  # magic, payload length
_RECORD_HEAD = struct.Struct("<QQ32sI")  # seq, timestamp (ns), previous hash, ops length
CHECK_SIZE = 4
MIN_FRAME = _FRAME_HEAD.size + _RECORD_HEAD.size + CHECK_SIZE
"""No record is shorter (an ops list needs bytes too): bounds how many records damage can hide."""
_SEGMENT_RE = re.compile(r"^(\d{20})\.jnl$")
_MARKER = struct.Struct("20s1s10s1s")
_MARKER_SIZE = _MARKER.size
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_MODE = 0o644
_NEW_DIR_MODE = 0o755


class JournalError(IntegrityError):
    """A journal is damaged or cannot be applied: replay stopped at the last good record.

    Its own exit code (not INTEGRITY's 4) because a script's answer differs: the
    workspace up to the last good record is restorable, and the operator decides
    whether to accept the loss.
    """

    exit_code = JOURNAL_DAMAGED

    def __init__(self, message: str, problem: JournalProblem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


class ReplayMismatch(JournalError):
    """The target is not in the state a record expects (it is not the journal's base)."""


# --- operations and records ------------------------------------------------


@dataclass(frozen=True)
class Put:
    """Replace the whole content of a file (creating it and its parent directories)."""

    path: str
    data: bytes
    mode: int | None = None  # permission bits; None keeps an existing file's, else 0o644


@dataclass(frozen=True)
class Append:
    """Write `data` at `offset`, the file's length before the append.

    Carrying the offset makes a re-run harmless: replay cuts the file to the
    offset and writes, so the bytes land once however often it is applied.
    """

    path: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Delete:
    """Remove a file, a symlink or a whole directory tree."""

    path: str


@dataclass(frozen=True)
class Rename:
    """Move a file or a directory; an existing file at `dst` is replaced."""

    src: str
    dst: str


@dataclass(frozen=True)
class Mkdir:
    """Make a directory (and its parents)."""

    path: str


Op = Put | Append | Delete | Rename | Mkdir


@dataclass(frozen=True)
class JournalRecord:
    """One atomic group of operations, as written or as read back and verified."""

    seq: int
    ts_ns: int  # UTC, nanoseconds since the Unix epoch
    prev: bytes  # BLAKE3-256 of the previous record's frame; ZERO_HASH for a base record
    ops: tuple[Op, ...]
    hash: bytes = ZERO_HASH  # BLAKE3-256 of this record's frame (magic through payload)
    size: int = 0  # framed bytes
    segment: str = ""  # where it was read, for messages
    offset: int = -1
    after_loss: bool = False  # read after records skipped under accept_loss: replay is lenient


def op_paths(op: Op) -> tuple[str, ...]:
    return (op.src, op.dst) if isinstance(op, Rename) else (op.path,)


def describe(op: Op) -> str:
    """A short human form of an operation, for messages."""
    if isinstance(op, Rename):
        return f"rename {op.src} -> {op.dst}"
    if isinstance(op, Append):
        return f"append {len(op.data)} bytes to {op.path} at {op.offset}"
    if isinstance(op, Put):
        return f"put {len(op.data)} bytes to {op.path}"
    return f"{type(op).__name__.lower()} {op.path}"


def check_path(path: object) -> str:
    """Return `path` if it is a journal path, else raise ValueError saying why.

    A journal path names something strictly inside the workspace, the same way
    on every system: relative, "/"-separated, no empty, "." or ".." component,
    no NUL, valid UTF-8, and not a replay temporary name.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("a journal path must be a non-empty string")
    if "\x00" in path:
        raise ValueError(f"journal path {path!r} contains NUL")
    if path.startswith("/"):
        raise ValueError(f"journal path {path!r} is absolute")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"journal path {path!r} is not valid UTF-8") from None
    if size > 4096:
        raise ValueError(f"journal path {path[:40]!r}... is longer than 4096 bytes")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"journal path {path!r} has an empty, '.' or '..' component")
        if len(part.encode("utf-8")) > 255:
            raise ValueError(f"journal path {path!r} has a component longer than 255 bytes")
    if parts[0].startswith(RESERVED_PREFIX):
        raise ValueError(f"journal path {path!r}: names starting {RESERVED_PREFIX} are reserved")
    return path


def is_under(path: str, parent: str) -> bool:
    """Whether `path` lies strictly inside directory `parent` (both journal paths)."""
    return path.startswith(parent + "/")


# --- framing ---------------------------------------------------------------


def encode_record(
    seq: int, ts_ns: int, prev: bytes, ops: Iterable[Op]
) -> tuple[list[bytes], JournalRecord]:
    """Frame a record; returns the frame as parts (for one writev) and the record.

    The data of puts and appends is not copied into a buffer: the parts list
    refers to it, and the hash is computed over the parts as they will be written.
    """
    ops = tuple(ops)
    if seq < 1 or seq >= 1 << 64 or ts_ns < 0 or ts_ns >= 1 << 64:
        raise ValueError(f"sequence number {seq} or timestamp {ts_ns} out of range")
    if len(prev) != 32:
        raise ValueError("the previous hash must be 32 bytes")
    if not ops:
        raise ValueError("a record needs at least one operation")
    metas: list[dict[str, object]] = []
    datas: list[bytes] = []
    for op in ops:
        meta, data = _op_meta(op)
        metas.append(meta)
        if data:
            datas.append(data)
    ops_json = json.dumps(metas, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    length = _RECORD_HEAD.size + len(ops_json) + sum(len(d) for d in datas)
    if length > MAX_PAYLOAD:
        raise ValueError(f"a record of {length} bytes exceeds the journal's {MAX_PAYLOAD}")
    head = _FRAME_HEAD.pack(MAGIC, length)
    fixed = _RECORD_HEAD.pack(seq, ts_ns, prev, len(ops_json))
    hasher = blake3.blake3(head)
    hasher.update(fixed)
    hasher.update(ops_json)
    for data in datas:
        hasher.update(data)
    digest = hasher.digest()
    parts = [head, fixed, ops_json, *datas, digest[:CHECK_SIZE]]
    size = _FRAME_HEAD.size + length + CHECK_SIZE
    return parts, JournalRecord(seq, ts_ns, prev, ops, digest, size)


def _op_meta(op: Op) -> tuple[dict[str, object], bytes]:
    for path in op_paths(op):
        check_path(path)
    if isinstance(op, Put):
        meta: dict[str, object] = {"op": "put", "path": op.path, "len": len(op.data)}
        if op.mode is not None:
            _check_mode(op.mode)
            meta["mode"] = op.mode
        return meta, op.data
    if isinstance(op, Append):
        if op.offset < 0:
            raise ValueError("an append offset cannot be negative")
        return {"op": "append", "path": op.path, "offset": op.offset, "len": len(op.data)}, op.data
    if isinstance(op, Delete):
        return {"op": "delete", "path": op.path}, b""
    if isinstance(op, Rename):
        return {"op": "rename", "src": op.src, "dst": op.dst}, b""
    if isinstance(op, Mkdir):
        return {"op": "mkdir", "path": op.path}, b""
    raise TypeError(f"not a journal operation: {op!r}")


def _check_mode(mode: object) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode {mode!r} is not a permission value between 0 and 0o777")
    return mode


class FrameError(Exception):
    """Bytes at a position are not an intact record.

    `framed` is set when the frame itself is intact (its checksum holds) but its
    payload is not a valid record: then its sequence number, hash and end are
    known, which lets a reader skip exactly that record.
    """

    def __init__(
        self,
        reason: str,
        *,
        incomplete: bool = False,
        framed: tuple[int, bytes, int] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.incomplete = incomplete
        self.framed = framed  # (seq, hash, end offset)


def decode_record(buf: bytes, pos: int = 0, segment: str = "") -> JournalRecord:
    """Decode and verify the record framed at `pos`; raise FrameError if it is not intact."""
    avail = len(buf) - pos
    if avail < _FRAME_HEAD.size:
        raise FrameError(f"{avail} bytes, too short for a record", incomplete=True)
    magic, length = _FRAME_HEAD.unpack_from(buf, pos)
    if magic != MAGIC:
        raise FrameError("no record magic")
    if length > MAX_PAYLOAD or length < _RECORD_HEAD.size:
        raise FrameError(f"impossible record length {length}")
    end = pos + _FRAME_HEAD.size + length + CHECK_SIZE
    if end > len(buf):
        need = end - pos
        raise FrameError(f"incomplete record: {avail} of its {need} bytes", incomplete=True)
    view = memoryview(buf)
    digest = blake3.blake3(view[pos : end - CHECK_SIZE]).digest()
    if digest[:CHECK_SIZE] != buf[end - CHECK_SIZE : end]:
        raise FrameError("checksum mismatch")
    seq, ts_ns, prev, ops_len = _RECORD_HEAD.unpack_from(buf, pos + _FRAME_HEAD.size)
    body = pos + _FRAME_HEAD.size + _RECORD_HEAD.size
    framed = (seq, digest, end)
    try:
        if seq < 1:
            raise ValueError("sequence number 0")
        if ops_len > length - _RECORD_HEAD.size:
            raise ValueError(f"ops length {ops_len} exceeds the payload")
        ops = _decode_ops(buf[body : body + ops_len], view[body + ops_len : end - CHECK_SIZE])
    except ValueError as exc:
        raise FrameError(f"invalid record {seq}: {exc}", framed=framed) from None
    return JournalRecord(seq, ts_ns, prev, ops, digest, end - pos, segment, pos)


_OP_FIELDS: dict[str, tuple[str, ...]] = {
    "put": ("op", "path", "len"),
    "append": ("op", "path", "offset", "len"),
    "delete": ("op", "path"),
    "rename": ("op", "src", "dst"),
    "mkdir": ("op", "path"),
}


def _decode_ops(ops_json: bytes, data: memoryview) -> tuple[Op, ...]:
    try:
        items = jsonparse.loads(ops_json.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the operation list is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ValueError("the operation list is not a non-empty JSON array")
    ops: list[Op] = []
    pos = 0
    for item in items:
        if not isinstance(item, dict) or item.get("op") not in _OP_FIELDS:
            raise ValueError(f"unknown operation {item!r:.60}")
        kind = item["op"]
        allowed = set(_OP_FIELDS[kind]) | ({"mode"} if kind == "put" else set())
        if set(item) - allowed or not set(_OP_FIELDS[kind]) <= set(item):
            raise ValueError(f"{kind}: fields {sorted(item)} (expected {sorted(allowed)})")
        if kind in ("put", "append"):
            n = _uint(item, "len")
            if pos + n > len(data):
                raise ValueError(f"{kind} claims {n} bytes past the end of the data")
            chunk = bytes(data[pos : pos + n])
            pos += n
            path = check_path(item["path"])
            if kind == "put":
                mode = _check_mode(item["mode"]) if "mode" in item else None
                ops.append(Put(path, chunk, mode))
            else:
                ops.append(Append(path, _uint(item, "offset"), chunk))
        elif kind == "rename":
            ops.append(Rename(check_path(item["src"]), check_path(item["dst"])))
        elif kind == "delete":
            ops.append(Delete(check_path(item["path"])))
        else:
            ops.append(Mkdir(check_path(item["path"])))
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} data bytes belong to no operation")
    return tuple(ops)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a repeated key (two readers could pick different values)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key appears twice")
    return obj


def _uint(item: dict[str, object], key: str) -> int:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


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


# --- segments --------------------------------------------------------------


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: str | Path) -> list[tuple[int, Path]]:
    """The segment files of a journal, by the sequence number their names give, ascending."""
    found = []
    for entry in os.scandir(directory):
        match = _SEGMENT_RE.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def open_regular(path: str | Path, what: str, flags: int = os.O_RDONLY | os.O_NOFOLLOW) -> int:
    """A descriptor of `path` if it is a regular file: never through a symlink, never
    blocking (a FIFO put in its place), never a device (/dev/zero reads without end).

    FileNotFoundError if it is gone; JournalError if something else stands there. The
    journal's files (segments, a replay marker, `shipped`) are only ever written as
    regular files, so anything else in their place is damage to the journal.
    """
    try:
        return filekind.open_regular(path, flags | os.O_NOFOLLOW)
    except filekind.NotRegular as exc:
        raise JournalError(f"{what} {path} is {exc.kind}, not a regular file; not read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JournalError(f"{what} {path} is a symlink; not followed") from None
        raise


def read_regular(path: str | Path, what: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file (see open_regular), at most `limit` of them.

    Without a limit it reads to the end of the file, which a regular file has."""
    fd = open_regular(path, what)
    try:
        parts = []
        left = limit
        while left is None or left > 0:
            chunk = os.read(fd, 1 << 20 if left is None else min(left, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            if left is not None:
                left -= len(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_segment(path: str | Path) -> bytes:
    """A segment's bytes. The format caps no segment's size (the writer's segment size is
    a setting, and one record may reach MAX_PAYLOAD alone), so the bound is the regular
    file's own end. FileNotFoundError if it is gone."""
    return read_regular(path, "journal segment")


def _read_segment(path: Path) -> bytes:
    """A segment's bytes; one trimmed away since it was listed reads as empty (a gap)."""
    try:
        return read_segment(path)
    except FileNotFoundError:
        return b""


def first_record(path: str | Path) -> JournalRecord | None:
    """The first record of a segment if it is intact (used to date a segment cheaply)."""
    fd = open_regular(path, "journal segment")
    with os.fdopen(fd, "rb") as f:
        head = f.read(_FRAME_HEAD.size)
        if len(head) < _FRAME_HEAD.size:
            return None
        _, length = _FRAME_HEAD.unpack(head)
        if length > MAX_PAYLOAD:
            return None
        buf = head + f.read(length + CHECK_SIZE)
    try:
        return decode_record(buf, 0, Path(path).name)
    except FrameError:
        return None


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
            if entry.name.endswith(SEGMENT_SUFFIX) and not _SEGMENT_RE.match(entry.name):
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


# --- replay ----------------------------------------------------------------


def read_marker(path: str | Path) -> tuple[int, int] | None:
    """A replay marker: (applied seq, operations of the next record already applied)."""
    try:
        raw = read_regular(path, "replay marker", _MARKER_SIZE)
    except FileNotFoundError:
        return None
    return _parse_marker(raw, path)


def _parse_marker(raw: bytes, path: str | Path) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        seq, sp, ops, nl = _MARKER.unpack(raw[:_MARKER_SIZE])
        if sp != b" " or nl != b"\n":
            raise ValueError
        return int(seq), int(ops)
    except (struct.error, ValueError):
        raise JournalError(f"replay marker {path} is not readable: {raw[:40]!r}") from None


def _open_marker(marker: str | Path) -> int:
    """The replay marker, opened to read and rewrite: created if missing, never followed
    through a symlink, never blocking, and only a regular file (else JournalError)."""
    return open_regular(marker, "replay marker", os.O_RDWR | os.O_CREAT)


def _marker_bytes(seq: int, ops: int) -> bytes:
    return b"%020d %010d\n" % (seq, ops)


@dataclass
class ReplayResult:
    records: int = 0  # records applied
    ops: int = 0
    bytes: int = 0  # data bytes written by puts and appends
    first_seq: int | None = None  # first record applied
    last_seq: int | None = None  # the target's sequence number after replay
    skipped: int = 0  # records the marker showed already applied
    lossy: list[str] = field(default_factory=list)  # ops bent or dropped after a loss
    leftovers: list[str] = field(default_factory=list)  # temporary names that could not go
    scan: JournalScan | None = None  # replay_into from a directory: what the reader found


class _Mismatch(Exception):
    """The target is not in the state an operation expects."""


class Replayer:
    """Applies records to one target directory, in order, each whole or not at all.

    All paths are resolved from a directory fd one component at a time with
    O_NOFOLLOW, so no record can reach outside the target (not through "..",
    not through a symlink already in the target).

    Within a record, every operation first keeps what it replaces (a hard link
    or a rename under a reserved top-level name, `.ccj-old-<seq>-<i>`), so a
    failing operation rolls back the ones before it; the kept entries are
    removed once the record is whole. With a marker file, progress is written
    after each operation, so a process killed mid-record is finished by the
    next replay: the interrupted operation is re-run (each one is idempotent)
    and the rest follow.
    """

    def __init__(self, target: str | Path, marker: str | Path | None = None) -> None:
        self.target = Path(target)
        self.result = ReplayResult()
        self._root = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._marker_fd: int | None = None
        self.applied_seq: int | None = None
        self._ops_done = 0
        if marker is not None:
            try:
                fd = _open_marker(marker)
            except BaseException:
                os.close(self._root)
                raise
            self._marker_fd = fd
            state = _parse_marker(os.pread(fd, _MARKER_SIZE, 0), marker)
            if state is not None:
                self.applied_seq, self._ops_done = state

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1
        if self._marker_fd is not None:
            os.close(self._marker_fd)
            self._marker_fd = None

    def start_after(self, seq: int) -> None:
        """Declare the target's state: it reflects every record up to `seq`."""
        if self.applied_seq is not None and self.applied_seq < seq:
            raise ReplayMismatch(
                f"the replay marker says the target is at record {self.applied_seq}, "
                f"not {seq}: records {self.applied_seq + 1}..{seq} would be missing"
            )
        if self.applied_seq is None:
            self.applied_seq, self._ops_done = seq, 0
            self._mark(seq, 0)

    def apply(self, record: JournalRecord) -> bool:
        """Apply one record; False if the target already reflects it."""
        applied = self.applied_seq
        if applied is not None and record.seq <= applied:
            self.result.skipped += 1
            return False
        if applied is not None and record.seq != applied + 1 and not record.after_loss:
            raise ReplayMismatch(
                f"record {record.seq} cannot follow record {applied}: "
                f"records {applied + 1}..{record.seq - 1} are missing"
            )
        for op in record.ops:
            try:
                for path in op_paths(op):
                    check_path(path)
                if isinstance(op, Put) and op.mode is not None:
                    _check_mode(op.mode)
            except ValueError as exc:
                raise JournalError(f"record {record.seq} refused: {exc}") from None
        base = record.seq - 1
        start = self._ops_done if applied is not None and record.seq == applied + 1 else 0
        undo: list[Callable[[], None]] = []
        kept: list[str] = []
        n = len(record.ops)
        i = start
        try:
            for i in range(start, n):
                self._apply_op(record, i, undo, kept)
                if i < n - 1:
                    self._mark(base, i + 1)
        except BaseException as exc:
            self._roll_back(undo)
            self._mark(base, start)
            err = self._explain(record, i, exc)
            if err is exc:
                raise
            raise err from exc
        for name in kept:
            self._remove_top(name)
        if start:
            self._sweep(record)  # what the interrupted run kept
        self.applied_seq, self._ops_done = record.seq, 0
        self._mark(record.seq, 0)
        res = self.result
        res.records += 1
        res.ops += n - start
        res.first_seq = res.first_seq or record.seq
        res.last_seq = record.seq
        return True

    # --- one operation ------------------------------------------------------

    def _apply_op(
        self, record: JournalRecord, i: int, undo: list[Callable[[], None]], kept: list[str]
    ) -> None:
        op = record.ops[i]
        keep_old = i < len(record.ops) - 1  # only a later failure needs what the last op replaced
        old = f"{RESERVED_PREFIX}old-{record.seq}-{i}"
        mark = len(undo)
        try:
            if isinstance(op, Put):
                self._put(op, old, f"{RESERVED_PREFIX}tmp-{record.seq}-{i}", keep_old, undo, kept)
            elif isinstance(op, Append):
                self._append(op, record.after_loss, undo)
            elif isinstance(op, Delete):
                self._delete(op, old, undo, kept)
            elif isinstance(op, Rename):
                self._rename(op, old, keep_old, record.after_loss, undo, kept)
            else:
                self._mkdir(op, undo)
        except _Mismatch as exc:
            if not record.after_loss:
                raise
            self._roll_back(undo[mark:])  # this op only: the record goes on without it
            del undo[mark:]
            self.result.lossy.append(f"record {record.seq}: {describe(op)}: {exc} (skipped)")

    def _put(
        self,
        op: Put,
        old: str,
        tmp: str,
        keep_old: bool,
        undo: list[Callable[[], None]],
        kept: list[str],
    ) -> None:
        created: list[str] = []
        undo.append(lambda: self._rmdirs(created))
        with self._made_parent(op.path, created) as (pfd, name):
            st = _lstat(name, pfd)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise _Mismatch(f"{op.path} is a directory")
            if st is not None and keep_old:
                if _lstat(old, self._root) is None:  # a re-run keeps the first run's copy
                    self._keep_copy(name, pfd, old)
                kept.append(old)
                undo.append(lambda: self._restore(old, op.path))
            elif st is None:
                undo.append(lambda: self._remove(op.path))
            mode = op.mode
            if mode is None:
                mode = stat.S_IMODE(st.st_mode) if st and stat.S_ISREG(st.st_mode) else 0o644
            # Whatever sits at the temporary name (a stale one of an interrupted run, or a
            # hard link, symlink or FIFO someone planted) is removed, never opened: the
            # create is exclusive and does not block.
            flags = _EXCL_FLAGS
            try:
                _unlink_quietly(tmp, self._root)
                fd = os.open(tmp, flags, 0o600, dir_fd=self._root)
                try:
                    _write_all(fd, op.data, 0)
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                os.rename(tmp, name, src_dir_fd=self._root, dst_dir_fd=pfd)
            except BaseException:
                _unlink_quietly(tmp, self._root)
                raise
        self.result.bytes += len(op.data)

    def _append(self, op: Append, lenient: bool, undo: list[Callable[[], None]]) -> None:
        created: list[str] = []
        undo.append(lambda: self._rmdirs(created))
        create = op.offset == 0 or lenient
        with self._parent(op.path, create, created) as parent:
            if parent is None:
                raise _Mismatch(f"{op.path} does not exist (the append is at {op.offset})")
            pfd, name = parent
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC  # read: the tail a re-run cuts
            new = False
            try:
                fd = os.open(name, flags, dir_fd=pfd)
            except FileNotFoundError:
                if not create:
                    raise _Mismatch(
                        f"{op.path} does not exist (the append is at {op.offset})"
                    ) from None
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=pfd)
                new = True
                undo.append(lambda: self._remove(op.path))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    raise _Mismatch(f"{op.path} is not a regular file") from None
                raise
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise _Mismatch(f"{op.path} is not a regular file")
                if new:
                    os.fchmod(fd, _NEW_FILE_MODE)
                size = st.st_size
                if size < op.offset:
                    if not lenient:
                        raise _Mismatch(f"{op.path} has {size} bytes; the append is at {op.offset}")
                    self.result.lossy.append(
                        f"{op.path}: {op.offset - size} bytes missing before {op.offset} (a hole)"
                    )
                if not new:
                    tail = os.pread(fd, size - op.offset, op.offset) if size > op.offset else b""
                    undo.append(lambda: self._untail(op.path, op.offset, size, tail))
                if size > op.offset:
                    os.ftruncate(fd, op.offset)
                _write_all(fd, op.data, op.offset)
            finally:
                os.close(fd)
        self.result.bytes += len(op.data)

    def _delete(
        self, op: Delete, old: str, undo: list[Callable[[], None]], kept: list[str]
    ) -> None:
        with self._parent(op.path, False, None) as parent:
            if parent is None:
                return
            pfd, name = parent
            if _lstat(name, pfd) is None:
                return  # already gone (or deleted by an interrupted run: _sweep removes it)
            os.rename(name, old, src_dir_fd=pfd, dst_dir_fd=self._root)
            kept.append(old)
            undo.append(lambda: self._restore(old, op.path))

    def _rename(
        self,
        op: Rename,
        old: str,
        keep_old: bool,
        lenient: bool,
        undo: list[Callable[[], None]],
        kept: list[str],
    ) -> None:
        created: list[str] = []
        undo.append(lambda: self._rmdirs(created))
        with self._parent(op.src, False, None) as src_parent:
            src_st = _lstat(src_parent[1], src_parent[0]) if src_parent else None
            with self._parent(op.dst, src_st is not None, created) as dst_parent:
                dst_st = _lstat(dst_parent[1], dst_parent[0]) if dst_parent else None
                if src_st is None:
                    if dst_st is not None:
                        return  # an interrupted run of this record already moved it
                    raise _Mismatch(f"{op.src} does not exist")
                assert src_parent is not None and dst_parent is not None
                if dst_st is not None:
                    if stat.S_ISDIR(dst_st.st_mode):
                        raise _Mismatch(f"{op.dst} is a directory")
                    if stat.S_ISDIR(src_st.st_mode):
                        raise _Mismatch(f"{op.dst} exists; a directory cannot replace it")
                    if keep_old:
                        if _lstat(old, self._root) is None:
                            self._keep_copy(dst_parent[1], dst_parent[0], old)
                        kept.append(old)
                        undo.append(lambda: self._restore(old, op.dst))
                os.rename(
                    src_parent[1], dst_parent[1], src_dir_fd=src_parent[0], dst_dir_fd=dst_parent[0]
                )
                undo.append(lambda: self._move(op.dst, op.src))

    def _mkdir(self, op: Mkdir, undo: list[Callable[[], None]]) -> None:
        created: list[str] = []
        undo.append(lambda: self._rmdirs(created))
        with self._made_parent(op.path, created) as (pfd, name):
            st = _lstat(name, pfd)
            if st is None:
                os.mkdir(name, _NEW_DIR_MODE, dir_fd=pfd)
                created.append(op.path)
                _fix_dir_mode(name, pfd)
            elif not stat.S_ISDIR(st.st_mode):
                raise _Mismatch(f"{op.path} exists and is not a directory")

    # --- paths ----------------------------------------------------------------

    @contextlib.contextmanager
    def _made_parent(self, path: str, created: list[str] | None) -> Iterator[tuple[int, str]]:
        """`_parent` creating what is missing: the directory is always there."""
        with self._parent(path, True, created) as parent:
            assert parent is not None  # create=True makes every component
            yield parent

    @contextlib.contextmanager
    def _parent(
        self, path: str, create: bool, created: list[str] | None
    ) -> Iterator[tuple[int, str] | None]:
        """The open directory holding `path`'s last component (None if it does not exist).

        Each component is opened with O_NOFOLLOW: a symlink or a file where a
        directory should be is a mismatch, never followed.
        """
        parts = path.split("/")
        fd = self._root
        try:
            for k, comp in enumerate(parts[:-1]):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        yield None
                        return
                    os.mkdir(comp, _NEW_DIR_MODE, dir_fd=fd)
                    if created is not None:
                        created.append("/".join(parts[: k + 1]))
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(nfd, _NEW_DIR_MODE)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        prefix = "/".join(parts[: k + 1])
                        raise _Mismatch(f"{prefix} is not a directory") from None
                    raise
                if fd != self._root:
                    os.close(fd)
                fd = nfd
            yield fd, parts[-1]
        finally:
            if fd != self._root:
                os.close(fd)

    def _keep_copy(self, name: str, pfd: int, old: str) -> None:
        """Keep what is at `name` under the reserved name `old` without moving it."""
        try:
            os.link(name, old, src_dir_fd=pfd, dst_dir_fd=self._root, follow_symlinks=False)
            return
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EXDEV):
                raise
        st = os.lstat(name, dir_fd=pfd)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=pfd), old, dir_fd=self._root)
            return
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dst = os.open(old, flags, 0o600, dir_fd=self._root)
            try:
                while chunk := os.read(src, 1 << 20):
                    _write_all_seq(dst, chunk)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
            except BaseException:
                _unlink_quietly(old, self._root)
                raise
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _restore(self, old: str, path: str) -> None:
        with self._made_parent(path, None) as (pfd, name):
            os.rename(old, name, src_dir_fd=self._root, dst_dir_fd=pfd)

    def _remove(self, path: str) -> None:
        with self._parent(path, False, None) as parent:
            if parent is not None:
                _remove_entry(parent[1], parent[0])

    def _move(self, src: str, dst: str) -> None:
        with self._parent(src, False, None) as sp, self._parent(dst, True, None) as dp:
            if sp is not None and dp is not None:
                os.rename(sp[1], dp[1], src_dir_fd=sp[0], dst_dir_fd=dp[0])

    def _untail(self, path: str, offset: int, size: int, tail: bytes) -> None:
        with self._parent(path, False, None) as parent:
            if parent is None:
                return
            fd = os.open(parent[1], os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent[0])
            try:
                os.ftruncate(fd, min(offset, size))
                if tail:
                    _write_all(fd, tail, offset)
            finally:
                os.close(fd)

    def _rmdirs(self, created: list[str]) -> None:
        for path in reversed(created):
            with contextlib.suppress(OSError), self._parent(path, False, None) as parent:
                if parent is not None:
                    os.rmdir(parent[1], dir_fd=parent[0])

    # --- bookkeeping -------------------------------------------------------

    def _roll_back(self, undo: list[Callable[[], None]]) -> None:
        for step in reversed(undo):
            try:
                step()
            except OSError as exc:
                self.result.leftovers.append(f"rollback step failed: {exc}")

    def _remove_top(self, name: str) -> None:
        try:
            _remove_entry(name, self._root)
        except OSError as exc:
            self.result.leftovers.append(f"{name}: {exc.strerror}")

    def _sweep(self, record: JournalRecord) -> None:
        for i in range(len(record.ops)):
            for kind in ("old", "tmp"):
                self._remove_top(f"{RESERVED_PREFIX}{kind}-{record.seq}-{i}")

    def _mark(self, seq: int, ops: int) -> None:
        """Record progress; a pwrite, not an fsync: exact after a process crash, see docs."""
        self.applied_seq, self._ops_done = seq, ops
        if self._marker_fd is not None:
            os.pwrite(self._marker_fd, _marker_bytes(seq, ops), 0)

    def _explain(self, record: JournalRecord, i: int, exc: BaseException) -> BaseException:
        if not isinstance(exc, Exception):
            return exc
        what = f"record {record.seq}, {describe(record.ops[i])}"
        at = f"the target is left at record {record.seq - 1}"
        if isinstance(exc, _Mismatch):
            return ReplayMismatch(f"replay stopped at {what}: {exc}; {at}")
        if isinstance(exc, OSError):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return NoSpace(f"no space left on the target while replaying {what}; {at}")
            return CleancutError(f"replay stopped at {what}: {exc.strerror or exc}; {at}")
        return exc


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _remove_entry(name: str, dir_fd: int) -> None:
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _fix_dir_mode(name: str, dir_fd: int) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fchmod(fd, _NEW_DIR_MODE)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_all_seq(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replay(
    records: Iterable[JournalRecord], target: str | Path, *, marker: str | Path | None = None
) -> ReplayResult:
    """Apply records, in order, to `target`; see Replayer for the guarantees."""
    with Replayer(target, marker) as replayer:
        for record in records:
            replayer.apply(record)
        return replayer.result


def replay_into(
    target: str | Path,
    source: str | Path | Iterable[JournalRecord],
    after_seq: int = 0,
    upto_seq: int | None = None,
    *,
    accept_loss: bool = False,
    marker: str | Path | None = None,
) -> ReplayResult:
    """Bring `target`, which reflects record `after_seq`, up to `upto_seq` (or the journal's end).

    `source` is a journal directory (read and verified here) or records. The
    replay goes as far as the journal is good: when the reader stopped on
    damage, `result.scan.error()` is the error to report, and the target is a
    consistent workspace at `result.last_seq`.
    """
    scan: JournalScan | None = None
    if isinstance(source, str | Path):
        scan = read_journal(source, after_seq, upto_seq, accept_loss=accept_loss)
        records: Iterable[JournalRecord] = scan
    else:
        records = (
            r for r in source if r.seq > after_seq and (upto_seq is None or r.seq <= upto_seq)
        )
    with Replayer(target, marker) as replayer:
        if after_seq:
            replayer.start_after(after_seq)
        for record in records:
            replayer.apply(record)
        result = replayer.result
        if result.last_seq is None:
            applied = replayer.applied_seq
            result.last_seq = applied if applied is not None else after_seq
    result.scan = scan
    return result
