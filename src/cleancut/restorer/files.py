"""Restored files in progress: temporary files written at offsets, renamed when whole.

A file's blobs arrive in pack order, from several threads, in any order. The
first blob creates the file under a random temporary name (safeio.py) and sets
its final size (ftruncate: no data blocks, so the holes of a sparse file stay
holes); every blob is written with pwrite at its offsets, its blocks of zeros
skipped; the last one sets the metadata and renames the file into place. A file
with a damaged blob or a failed write is removed instead, never renamed: no
final name ever holds a partial or unverified file. A process killed midway
leaves only temporary names (".cc-tmp-" and 16 random hex digits).

Descriptors: a file waiting for blobs from packs further on keeps its
descriptor while few are open; beyond OPEN_MAX it is closed after each write and
reopened by its temporary name, relative to its directory, without following
links, and only if it is still the very inode that was created (device and
inode number compared): nothing swapped in meanwhile is written to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Callable

from cleancut.errors import CleancutError, NoSpace
from cleancut.fsio.safeio import create_temp, unlink_quietly, write_all
from cleancut.pathtext import shown_path
from cleancut.repository.tree import Node

from .plan import FileJob

HOLE_BLOCK = 64 << 10  # a run of zeros this long, so aligned, is skipped rather than written
OPEN_MAX = 256  # temporary files kept open between writes; more are reopened by name
_REOPEN_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

Segments = list[tuple[int, int]]  # (start, end) of the parts of a blob that are not zeros


def _zero(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] is all zero bytes (most blocks fail on the first or last)."""
    return data[start] == 0 and data[end - 1] == 0 and data.count(0, start, end) == end - start


def data_segments(data: bytes) -> Segments:
    """The ranges of `data` to write: everything but its aligned all-zero blocks. Found
    once per blob, however many places it is written to."""
    segments: Segments = []
    run = -1  # where the data to write starts, or -1
    for start in range(0, len(data), HOLE_BLOCK):
        end = min(start + HOLE_BLOCK, len(data))
        if not _zero(data, start, end):
            run = start if run < 0 else run
        elif run >= 0:
            segments.append((run, start))
            run = -1
    if run >= 0:
        segments.append((run, len(data)))
    return segments


class DirFds:
    """Open directory descriptors under the target, by relative path; a small LRU. One
    per thread: a descriptor is closed only by the thread that uses it."""

    def __init__(self, root_fd: int, limit: int = 128) -> None:
        self.root_fd = root_fd
        self.fds: OrderedDict[str, int] = OrderedDict()
        self.limit = limit

    def get(self, rel: str) -> int:
        """The open descriptor of directory `rel`, opening each missing level from the
        nearest open ancestor down (a loop, not recursion: a tree may be nested deeper
        than Python's recursion limit)."""
        if not rel:
            return self.root_fd
        fd = self.fds.get(rel)
        if fd is not None:
            self.fds.move_to_end(rel)
            return fd
        missing: list[str] = []
        base = rel
        while base and base not in self.fds:
            missing.append(base)
            base = base.rpartition("/")[0]
        fd = self.fds[base] if base else self.root_fd
        if base:
            self.fds.move_to_end(base)
        for level in reversed(missing):
            name = level.rpartition("/")[2]
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            self.fds[level] = fd
            self._evict(keep=level)
        return fd

    def _evict(self, keep: str) -> None:
        """Close the least recently used descriptors beyond the limit, never `keep`'s (the
        parent of the next level opened)."""
        while len(self.fds) > self.limit:
            old_rel = next(iter(self.fds))
            if old_rel == keep:
                self.fds.move_to_end(old_rel)
                continue
            os.close(self.fds.pop(old_rel))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class FileWriter:
    """Writes blobs into files in progress and finishes each file after its last blob.

    Outcomes are reported through the callbacks (each called under no file's lock):
    `finished(job)` for a file renamed into place, `failed(job)` for one removed
    (job.failure says why, job.damaged whether its data was damaged). A full
    target filesystem raises NoSpace: the restore stops.
    """

    def __init__(
        self,
        names: dict[str, set[str]],
        is_root: bool,
        finished: Callable[[FileJob], None],
        failed: Callable[[FileJob], None],
    ) -> None:
        self.names = names  # directory -> names restore puts there (never a temp name)
        self.is_root = is_root
        self.finished = finished
        self.failed = failed
        self._open_lock = threading.Lock()
        self._open = 0

    # --- the three events of a file's life --------------------------------

    def write(
        self, job: FileJob, data: bytes, segments: Segments, offsets: list[int], fds: DirFds
    ) -> None:
        """Write one verified blob at its offsets in `job`."""
        with job.lock:
            if job.done:
                return  # abandoned: the restore is stopping
            if not job.failure:
                try:
                    fd = self._descriptor(job, fds)
                    view = memoryview(data)
                    for offset in offsets:
                        for start, end in segments:
                            write_all(fd, view[start:end], offset + start)
                except OSError as exc:
                    self._write_failed(job, exc)
                except CleancutError as exc:  # no free temporary name
                    job.failure = str(exc)
            job.remaining -= len(offsets)
            last = job.remaining <= 0
            if last:
                self._finish(job, fds)
            elif job.fd >= 0 and self._open > OPEN_MAX:
                self._close(job)
        if last:
            self._report(job)

    def fail(self, job: FileJob, why: str, count: int, fds: DirFds) -> None:
        """A blob of `job` (at `count` offsets) is damaged: the file will not be restored."""
        with job.lock:
            if job.done:
                return
            if not job.failure:
                job.failure, job.damaged = why, True
            job.remaining -= count
            last = job.remaining <= 0
            if last:
                self._finish(job, fds)
        if last:
            self._report(job)

    def empty(self, job: FileJob, fds: DirFds) -> None:
        """A file without content: created, finished and renamed at once."""
        with job.lock:
            try:
                self._descriptor(job, fds)
            except OSError as exc:
                self._write_failed(job, exc)
            except CleancutError as exc:
                job.failure = str(exc)
            self._finish(job, fds)
        self._report(job)

    def abandon(self, job: FileJob, fds: DirFds) -> None:
        """The restore stopped: remove what was written of an unfinished file."""
        with job.lock:
            if job.done:
                return
            job.done = True
            self._close(job)
            if job.tmp:
                with contextlib.suppress(OSError):
                    unlink_quietly(job.tmp, fds.get(job.dir_rel))

    # --- internals ------------------------------------------------------------

    def _report(self, job: FileJob) -> None:
        (self.failed if job.failure else self.finished)(job)

    def _descriptor(self, job: FileJob, fds: DirFds) -> int:
        """The file's open descriptor: created (sized, empty) on its first write, or
        reopened if it was closed to bound the open descriptors."""
        if job.fd >= 0:
            return job.fd
        parent = fds.get(job.dir_rel)
        if not job.tmp:
            fd, job.tmp = create_temp(parent, self.names.get(job.dir_rel, ()))
            try:
                st = os.fstat(fd)
                job.identity = (st.st_dev, st.st_ino)
                job.owned = (st.st_uid, st.st_gid) == (job.node.uid, job.node.gid)
                os.ftruncate(fd, job.node.size)  # the final size, as holes: no blocks used
            except BaseException:
                os.close(fd)
                raise
        else:
            fd = os.open(job.tmp, _REOPEN_FLAGS, dir_fd=parent)
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != job.identity:
                os.close(fd)
                raise OSError(errno.ESTALE, "the temporary file was replaced")
            os.set_blocking(fd, True)
        job.fd = fd
        with self._open_lock:
            self._open += 1
        return fd

    def _close(self, job: FileJob) -> None:
        if job.fd >= 0:
            os.close(job.fd)
            job.fd = -1
            with self._open_lock:
                self._open -= 1

    def _write_failed(self, job: FileJob, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(
                f"no space left on the target filesystem while writing {shown_path(job.rel)}"
            ) from exc
        job.failure = f"cannot write ({exc.strerror})"

    def _finish(self, job: FileJob, fds: DirFds) -> None:
        """After the last blob: metadata and rename, or removal if anything failed."""
        job.done = True
        name = job.rel.rpartition("/")[2]  # the path decides where, never the node
        try:
            if not job.failure:
                self._set_metadata(job.fd, job.node, job.owned)
            self._close(job)
            parent = fds.get(job.dir_rel)
            if job.failure:
                unlink_quietly(job.tmp, parent)
                return
            os.rename(job.tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            self._close(job)
            with contextlib.suppress(OSError):
                unlink_quietly(job.tmp, fds.get(job.dir_rel))
            self._write_failed(job, exc)

    def _set_metadata(self, fd: int, node: Node, owned: bool) -> None:
        if self.is_root and not owned:  # a file created with its owner already needs none
            with contextlib.suppress(OSError):
                os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, node.mode)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
