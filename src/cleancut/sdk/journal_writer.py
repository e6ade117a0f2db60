"""The agent's journal writer: every workspace mutation made durable before it happens.

An agent that cannot pause (a voice agent, an always-on monitor) writes its
workspace through this instead of open()/write():

    journal = Journal("/var/lib/myagent/journal", "/var/lib/myagent/workspace")
    server = ControlServer(sock, agent="myagent", journal_seq=lambda: journal.last_seq)
    journal.append("transcript.jsonl", line)
    with journal.transaction():          # one record: applied whole or not at all
        journal.put("memory/state.json", state)
        journal.append("memory/log.jsonl", entry)

Each call validates the operation against the workspace (so a record never
describes something that cannot be applied), appends one record to the
current segment and fsyncs it, and only then applies it with the very code
replay uses (journal/frame.py, journal/replay.py), so the live workspace and a replayed one
cannot diverge. The file format is docs/journal.md.

Recovery is the write-ahead rule's payoff: a crash between the fsync and the
apply leaves the workspace behind the journal; the `applied` marker says by
how much (down to the operation), and reopening the journal applies the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.journal.frame import (
    MIN_JOURNAL_WINDOW,
    RESERVED_PREFIX,
    ZERO_HASH,
    Append,
    Delete,
    JournalError,
    Mkdir,
    Op,
    Put,
    Rename,
    check_path,
    encode_record,
    first_record,
    is_under,
    list_segments,
    segment_name,
)
from cleancut.journal.replay import Replayer, read_marker
from cleancut.journal.scan import JournalTail, read_journal, read_tail

SEGMENT_BYTES = 4 << 20
"""A segment rolls over past this size, so trimming deletes whole files."""
MARKER_NAME = "applied"
LOCK_NAME = "lock"

_sync = getattr(os, "fdatasync", os.fsync)  # an append needs the data and the size, not mtime

FILE, DIR, OTHER = "file", "dir", "other"
Entry = tuple[str, int]  # (kind, size); None stands for "absent"


@dataclass
class Transaction:
    """The operations grouped into one record; `seq` is its number once committed."""

    ops: list[Op] = field(default_factory=list)
    seq: int | None = None


class Journal:
    """A durable, write-ahead journal of one workspace, safe to share between threads."""

    def __init__(
        self,
        directory: str | Path,
        workspace: str | Path,
        *,
        start_after: int | None = None,
        segment_bytes: int = SEGMENT_BYTES,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Open (or create) the journal in `directory` for `workspace`.

        `start_after` is for a journal that starts from a restored workspace: it
        reflects every record up to that number, and the first record written
        is start_after + 1, so no sequence number is ever used twice. It only
        matters while the journal holds no record; afterwards the journal's own
        end decides, and a start_after beyond it (which would leave a gap) is an
        error.
        """
        if start_after is not None and start_after < 0:
            raise ValueError("start_after cannot be negative")
        self.directory = Path(directory)
        self.workspace = Path(workspace)
        self.segment_bytes = segment_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._local = threading.local()
        self._fd: int | None = None
        self._dir_fd = -1
        self._lock_fd = -1
        self._replayer: Replayer | None = None
        self._broken: str | None = None
        self._seg_size = 0
        self._seg_ts: dict[int, int] = {}  # first record's timestamp by segment, for trim
        self._stats = {"records": 0, "bytes": 0, "fsyncs": 0, "segments": 0}
        self._own_dir = _inside(self.directory, self.workspace)
        try:
            self._open(start_after)
        except BaseException:
            self.close()
            raise

    # --- opening --------------------------------------------------------------

    def _open(self, start_after: int | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalError(f"journal {self.directory} is open in another process") from None
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        tail = read_tail(self.directory)
        marker = self.directory / MARKER_NAME
        state = read_marker(marker)
        last = tail.last
        if last is None:
            base = start_after if start_after is not None else (state[0] if state else 0)
            self._cut_torn_tail(tail)
            _write_durably(marker, b"%020d %010d\n" % (base, 0), self._dir_fd)
            self._last_seq, self._last_hash, self._last_ts = base, ZERO_HASH, 0
        else:
            if start_after is not None and start_after > last.seq:
                raise JournalError(
                    f"journal {self.directory} ends at record {last.seq}; starting after "
                    f"{start_after} would leave a gap (use an empty directory)"
                )
            if state is None:
                raise JournalError(
                    f"journal {self.directory} has records but no {MARKER_NAME} marker: "
                    "cannot tell how far the workspace is"
                )
            if state[0] > last.seq:
                raise JournalError(
                    f"the workspace is at record {state[0]} but journal {self.directory} "
                    f"ends at {last.seq}: the journal lost durable records"
                )
            self._last_seq, self._last_hash, self._last_ts = last.seq, last.hash, last.ts_ns
        self._cut_torn_tail(tail)
        self._replayer = Replayer(self.workspace, marker)
        self._catch_up()
        self._sweep_workspace()
        if tail.segment is not None and tail.good_end < self.segment_bytes:
            self._fd = os.open(tail.segment, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._seg_size = tail.good_end

    def _cut_torn_tail(self, tail: JournalTail) -> None:
        """Drop what a crash mid-write left after the last intact record (never applied)."""
        for problem in tail.torn:
            _warn(problem.message)
        if tail.segment is not None and tail.segment.stat().st_size > tail.good_end:
            with open(tail.segment, "r+b") as f:
                f.truncate(tail.good_end)
                os.fsync(f.fileno())
        for dead in tail.dead:
            dead.unlink()
        if tail.dead:
            os.fsync(self._dir_fd)

    def _catch_up(self) -> None:
        """Apply the records a crash left durable but not (or half) applied."""
        assert self._replayer is not None
        applied = self._replayer.applied_seq or 0
        if applied >= self._last_seq:
            return
        scan = read_journal(self.directory, applied, self._last_seq)
        for record in scan:
            self._replayer.apply(record)
        scan.check()
        if self._replayer.applied_seq != self._last_seq:
            raise JournalError(
                f"journal {self.directory}: could only bring the workspace to record "
                f"{self._replayer.applied_seq} of {self._last_seq}"
            )
        _warn(f"re-applied records {applied + 1}..{self._last_seq} to the workspace")

    def _sweep_workspace(self) -> None:
        """Remove temporary names a crash left (replay's own, at the workspace's top)."""
        for entry in os.scandir(self.workspace):
            if entry.name.startswith(RESERVED_PREFIX):
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                else:
                    path.unlink()

    # --- what the agent calls -------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The last durable record (the SDK's `journal_seq`); 0 before the first."""
        return self._last_seq

    @property
    def applied_seq(self) -> int:
        """The last record applied to the workspace; equals last_seq except during a call."""
        assert self._replayer is not None
        return self._replayer.applied_seq or 0

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def put(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Replace the file's whole content (creating it and missing parent directories)."""
        self._submit((path,), lambda view: _check_put(view, path, bytes(data), mode))

    def append(self, path: str, data: bytes) -> None:
        """Append to the file (creating it); the record carries the offset it lands at."""
        self._submit((path,), lambda view: _check_append(view, path, bytes(data)))

    def delete(self, path: str) -> None:
        """Remove a file, symlink or directory tree; nothing is recorded if it is absent."""
        self._submit((path,), lambda view: _check_delete(view, path))

    def rename(self, src: str, dst: str) -> None:
        """Move a file or directory; an existing file at `dst` is replaced."""
        self._submit((src, dst), lambda view: _check_rename(view, src, dst))

    def mkdir(self, path: str) -> None:
        """Make a directory and its parents; nothing is recorded if it exists."""
        self._submit((path,), lambda view: _check_mkdir(view, path))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Group the calls made in the block (on this thread) into one record.

        The record is written when the block ends without an exception, and
        discarded (nothing written, nothing applied) when one escapes. Other
        threads wait for the block to end: a transaction sees a workspace no one
        else changes. Nested blocks join the outer one; an exception escaping an
        inner block drops only the inner block's operations. Reads inside the
        block see the workspace as it was: operations apply at the end.
        """
        outer: Transaction | None = getattr(self._local, "tx", None)
        if outer is not None:
            mark = len(outer.ops)
            try:
                yield outer
            except BaseException:
                del outer.ops[mark:]
                raise
            return
        with self._lock:
            self._check_usable()
            tx = Transaction()
            self._local.tx = tx
            try:
                yield tx
            finally:
                self._local.tx = None
            if tx.ops:
                tx.seq = self._commit(tx.ops)

    def trim(self, shipped_seq: int, keep_seconds: float = MIN_JOURNAL_WINDOW) -> list[str]:
        """Delete whole segments already shipped and older than `keep_seconds`.

        A segment goes only if every record in it is at or below `shipped_seq`
        (and applied), and its newest record is older than keep_seconds (the
        next segment's first timestamp bounds it). The newest segment is never
        deleted, and deletion stops at the first segment that must stay, so
        what remains is always a contiguous run of records ending at last_seq.
        """
        if keep_seconds < MIN_JOURNAL_WINDOW:
            raise ValueError(f"the journal keeps at least the last {MIN_JOURNAL_WINDOW} s locally")
        with self._lock:
            self._check_usable()
            limit = min(shipped_seq, self.applied_seq)
            oldest_kept = self._clock() - int(keep_seconds * 1e9)
            segs = list_segments(self.directory)
            deleted: list[str] = []
            for (_, path), (next_first, next_path) in zip(segs, segs[1:], strict=False):
                if next_first - 1 > limit:
                    break
                ts = self._segment_ts(next_first, next_path)
                if ts is None or ts > oldest_kept:
                    break
                path.unlink()
                deleted.append(path.name)
            if deleted:
                os.fsync(self._dir_fd)
            return deleted

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._dir_fd, self._lock_fd):
                if fd is not None and fd >= 0:
                    os.close(fd)  # closing the lock file releases the flock
            self._fd, self._dir_fd, self._lock_fd = None, -1, -1
            if self._replayer is not None:
                self._replayer.close()
                self._replayer = None
            self._broken = self._broken or "the journal is closed"

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------

    def _submit(self, paths: tuple[str, ...], check: Callable[[_View], Op | None]) -> None:
        """Validate an operation against the workspace-to-be, then record it (or queue it)."""
        for path in paths:
            check_path(path)
            self._check_own_dir(path)
        with self._lock:
            self._check_usable()
            tx: Transaction | None = getattr(self._local, "tx", None)
            op = check(_View(self.workspace, tx.ops if tx else []))
            if op is None:
                return
            if tx is not None:
                tx.ops.append(op)
            else:
                self._commit([op])

    def _commit(self, ops: list[Op]) -> int:
        """Write one record durably, then apply it: the write-ahead rule."""
        seq = self._last_seq + 1
        ts = max(self._clock(), self._last_ts)  # non-decreasing, even if the clock steps back
        parts, record = encode_record(seq, ts, self._last_hash, ops)
        self._write(seq, ts, parts, record.size)
        self._last_seq, self._last_hash, self._last_ts = seq, record.hash, ts
        assert self._replayer is not None
        try:
            self._replayer.apply(record)
        except BaseException as exc:
            self._broken = (
                f"record {seq} is durable but was not applied to the workspace ({exc}); "
                "reopen the journal to apply it"
            )
            raise
        return seq

    def _write(self, seq: int, ts: int, parts: list[bytes], size: int) -> None:
        if self._fd is None or (self._seg_size and self._seg_size + size > self.segment_bytes):
            self._roll(seq, ts)
        assert self._fd is not None
        try:
            _writev_all(self._fd, parts, size)
            _sync(self._fd)
        except BaseException:
            try:  # leave no torn record that a later record would turn into corruption
                os.ftruncate(self._fd, self._seg_size)
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"a failed write left {segment_name(seq)} torn ({exc})"
            raise
        self._seg_size += size
        self._stats["records"] += 1
        self._stats["bytes"] += size
        self._stats["fsyncs"] += 1

    def _roll(self, seq: int, ts: int) -> None:
        """Start a new segment named after its first record, durably."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.directory / segment_name(seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        os.fsync(self._dir_fd)
        self._seg_size = 0
        self._seg_ts[seq] = ts
        self._stats["fsyncs"] += 1
        self._stats["segments"] += 1

    def _segment_ts(self, first: int, path: Path) -> int | None:
        if first not in self._seg_ts:
            record = first_record(path)
            if record is None:
                return None
            self._seg_ts[first] = record.ts_ns
        return self._seg_ts[first]

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise JournalError(f"journal {self.directory} stopped: {self._broken}")

    def _check_own_dir(self, path: str) -> None:
        """Refuse operations on the journal itself when it lives inside the workspace."""
        own = self._own_dir
        if own is not None and (path == own or is_under(path, own) or is_under(own, path)):
            raise ValueError(f"{path}: the journal itself lives there")


# --- validation: what the workspace will look like --------------------------


class _View:
    """The workspace as it will be once a transaction's pending operations apply.

    Answers "what is at this path?" by walking the pending operations backwards
    (a rename maps the question to its source), then asking the disk. The
    callers check a path's parents from the top down, so a plain lstat of the
    joined path never goes through a symlink that was not already refused.
    """

    def __init__(self, root: Path, pending: list[Op]) -> None:
        self.root = str(root)
        self.pending = pending

    def entry(self, path: str) -> Entry | None:
        return self._at(path, len(self.pending))

    def _at(self, path: str, n: int) -> Entry | None:
        for idx in range(n - 1, -1, -1):
            op = self.pending[idx]
            if isinstance(op, Put | Append):
                if op.path == path:
                    size = len(op.data) if isinstance(op, Put) else op.offset + len(op.data)
                    return (FILE, size)
                if is_under(op.path, path):
                    return (DIR, 0)
                if is_under(path, op.path):
                    return None
            elif isinstance(op, Delete):
                if op.path == path or is_under(path, op.path):
                    return None
            elif isinstance(op, Mkdir):
                if op.path == path or is_under(op.path, path):
                    return (DIR, 0)
            elif isinstance(op, Rename):
                if op.dst == path or is_under(path, op.dst):
                    return self._at(op.src + path[len(op.dst) :], idx)
                if op.src == path or is_under(path, op.src):
                    return None
                if is_under(op.dst, path):
                    return (DIR, 0)
        return self._disk(path)

    def _disk(self, path: str) -> Entry | None:
        try:
            st = os.lstat(os.path.join(self.root, path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISREG(st.st_mode):
            return (FILE, st.st_size)
        if stat.S_ISDIR(st.st_mode):
            return (DIR, 0)
        return (OTHER, 0)

    def check_parents(self, path: str) -> None:
        """Every existing parent of `path` must be a real directory (not a file or symlink)."""
        parts = path.split("/")
        for k in range(1, len(parts)):
            prefix = "/".join(parts[:k])
            entry = self.entry(prefix)
            if entry is None:
                return  # created on apply, with everything below it
            if entry[0] != DIR:
                raise NotADirectoryError(f"{prefix} is not a directory (in the way of {path})")


def _check_put(view: _View, path: str, data: bytes, mode: int | None) -> Op:
    view.check_parents(path)
    entry = view.entry(path)
    if entry is not None and entry[0] == DIR:
        raise IsADirectoryError(f"{path} is a directory")
    return Put(path, data, mode)


def _check_append(view: _View, path: str, data: bytes) -> Op | None:
    view.check_parents(path)
    entry = view.entry(path)
    if entry is not None and entry[0] == DIR:
        raise IsADirectoryError(f"{path} is a directory")
    if entry is not None and entry[0] == OTHER:
        raise ValueError(f"{path} is not a regular file")
    if not data and entry is not None:
        return None
    return Append(path, entry[1] if entry else 0, data)


def _check_delete(view: _View, path: str) -> Op | None:
    view.check_parents(path)
    return Delete(path) if view.entry(path) is not None else None


def _check_rename(view: _View, src: str, dst: str) -> Op:
    if src == dst or is_under(dst, src):
        raise ValueError(f"cannot rename {src} to {dst}")
    view.check_parents(src)
    source = view.entry(src)
    if source is None:
        raise FileNotFoundError(f"{src} does not exist")
    view.check_parents(dst)
    target = view.entry(dst)
    if target is not None:
        if target[0] == DIR:
            raise IsADirectoryError(f"{dst} is a directory")
        if source[0] == DIR:
            raise FileExistsError(f"{dst} exists; a directory cannot replace it")
    return Rename(src, dst)


def _check_mkdir(view: _View, path: str) -> Op | None:
    view.check_parents(path)
    entry = view.entry(path)
    if entry is None:
        return Mkdir(path)
    if entry[0] != DIR:
        raise FileExistsError(f"{path} exists and is not a directory")
    return None


# --- small helpers ------------------------------------------------------------


def _inside(directory: Path, workspace: Path) -> str | None:
    """The journal directory as a journal path, if it lies inside the workspace."""
    try:
        rel = directory.resolve().relative_to(workspace.resolve())
    except ValueError:
        return None
    if not rel.parts:
        raise ValueError(f"the journal directory {directory} cannot be the workspace itself")
    return rel.as_posix()


def _writev_all(fd: int, parts: list[bytes], size: int) -> None:
    written = os.writev(fd, parts)
    if written < size:  # rare (signals, huge records): write the rest in order
        rest = memoryview(b"".join(parts))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def _write_durably(path: Path, data: bytes, dir_fd: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.fsync(dir_fd)


def _warn(message: str) -> None:
    print(f"cleancut-journal: {message}", file=sys.stderr)
