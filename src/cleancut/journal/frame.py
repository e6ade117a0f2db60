"""The journal's bytes: operations, records, their framing, and segment files.

An agent that cannot pause writes every mutation to its journal before
applying it (src/cleancut/sdk/journal_writer.py). A backup then needs no quiet moment: the last
snapshot plus the journal replayed up to a sequence number is a consistent
workspace. The journal package is the journal's only definition shared by both
sides, so it knows nothing of agents: a journal is files of records, a record is
a group of operations on relative paths (this module), `scan` verifies them and
`replay` applies them to a directory.

docs/journal.md is the byte-level contract (precise enough for a second
implementation). In short: a segment file `<first seq, 20 digits>.jnl` holds
records back to back; each record is framed (magic, length, payload, checksum)
and carries a contiguous sequence number, a timestamp and the BLAKE3 hash of the
previous record.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from cleancut import jsonparse
from cleancut.errors import ExitCode, IntegrityError
from cleancut.fsio import filekind

if TYPE_CHECKING:
    from .scan import JournalProblem

JOURNAL_DAMAGED = ExitCode.JOURNAL_DAMAGED

MAGIC = b"CCJ1"
SEGMENT_SUFFIX = ".jnl"
ZERO_HASH = bytes(32)
"""The previous-record hash of a base record: seq 1, or the first record after `start_after`."""
MAX_PAYLOAD = 1 << 30
"""A record larger than 1 GiB is refused when written and read as damage."""
RESERVED_PREFIX = ".ccj-"
"""Top-level names of this form in a target belong to replay (temporary files)."""

MIN_JOURNAL_WINDOW = 300
"""The rolling journal always covers at least the last 5 minutes (a profile may not shorten it)."""

_FRAME_HEAD = struct.Struct("<4sI")  # magic, payload length
_RECORD_HEAD = struct.Struct("<QQ32sI")  # seq, timestamp (ns), previous hash, ops length
CHECK_SIZE = 4
MIN_FRAME = _FRAME_HEAD.size + _RECORD_HEAD.size + CHECK_SIZE
"""No record is shorter (an ops list needs bytes too): bounds how many records damage can hide."""
SEGMENT_RE = re.compile(r"^(\d{20})\.jnl$")


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
            check_mode(op.mode)
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


def check_mode(mode: object) -> int:
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
                mode = check_mode(item["mode"]) if "mode" in item else None
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

# --- segments --------------------------------------------------------------


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: str | Path) -> list[tuple[int, Path]]:
    """The segment files of a journal, by the sequence number their names give, ascending."""
    found = []
    for entry in os.scandir(directory):
        match = SEGMENT_RE.match(entry.name)
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
