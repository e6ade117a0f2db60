"""Replaying a journal: records applied to a directory, each whole or not at all.

`replay` applies records to a directory, each one whole or not at all, and
never outside it. Every operation is idempotent when re-run, and an optional
marker file records progress operation by operation, so a replay killed at
any instant is finished by running it again. docs/journal.md says exactly what
replay guarantees.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.errors import CleancutError, NoSpace

from .frame import (
    RESERVED_PREFIX,
    Append,
    Delete,
    JournalError,
    JournalRecord,
    Mkdir,
    Put,
    Rename,
    ReplayMismatch,
    check_mode,
    check_path,
    describe,
    op_paths,
    open_regular,
    read_regular,
)
from .scan import JournalScan, read_journal

_EXCL_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
)
_MARKER = struct.Struct("20s1s10s1s")
_MARKER_SIZE = _MARKER.size
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_MODE = 0o644
_NEW_DIR_MODE = 0o755


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
                    check_mode(op.mode)
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
