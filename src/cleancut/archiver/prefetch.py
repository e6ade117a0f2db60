"""Warming the kernel's caches ahead of a walk.

A backup walks its source one directory at a time; on a cold cache each
directory listing and each inode is a disk read the walk waits for. A few
threads listing and stat-ing the tree ahead of it (system calls that release
the GIL) turn those waits into parallel I/O, as restic's concurrent scanner
does. They only read metadata and never influence what is backed up.

Like the walk, they never leave the source and never block on a special file.
The prefetcher keeps one descriptor of the source (its own open, not a dup: a
dup would share the walk's listing offset). A queued task holds only a
relative path; when it runs it opens that path one component at a time from
the source's descriptor with O_NOFOLLOW, so a component swapped for a symlink
stops it. A scan task covers a whole subtree, depth first, each directory
opened from its parent's descriptor with O_NOFOLLOW (one open per directory,
not one per path component: on a warm cache the scan's own system calls and
the GIL it takes from the walk were most of its cost); it holds at most
MAX_DEPTH descriptors (a subtree below that is queued as a task of its own),
and the directories near the top (SPREAD_DEPTH) get tasks of their own so the
threads share the tree.

A cache that is already warm (a workspace backed up every few minutes) gains
nothing from the scan and still pays for it: its threads take the GIL from the
walk at every system call (about 0.4 s of CPU on a warm 12,000-directory tree).
So the scan times its first WARM_SAMPLE directories and stops if their median
listing took less than WARM_DIR_NS: a cold directory costs a disk read (tens of
microseconds to milliseconds), a warm one a few microseconds. The guess only
decides how fast the walk goes, never what it reads; a loaded machine makes warm
directories look slow, so it errs towards scanning. Readahead of the files the
walk will read goes on regardless. Files get a readahead only
if, opened with O_NOFOLLOW|O_NONBLOCK, they are regular files.
"""

from __future__ import annotations

import contextlib
import os
import stat
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS |= getattr(os, "O_NOATIME", 0)
SPREAD_DEPTH = 2  # directories this close to the top are scanned by tasks of their own
MAX_DEPTH = 4  # descriptors one scan holds at most; a deeper subtree is a task of its own
WARM_SAMPLE = 32  # directories timed before the scan decides whether the cache is warm
WARM_DIR_NS = 25_000  # median time to list and stat a directory below which it is warm


class MetadataPrefetcher:
    def __init__(
        self, skip_dir: Callable[[str], bool], threads: int = 4, warm_dir_ns: int = WARM_DIR_NS
    ) -> None:
        self.skip_dir = skip_dir
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prefetch")
        self.stopped = threading.Event()
        self.warm = threading.Event()  # the cache looks warm: scanning stops, readahead not
        self.warm_dir_ns = warm_dir_ns
        self.scanned = 0  # directories listed by the scan
        self._pending = 0  # tasks queued or running
        self.idle = threading.Event()  # set while no task is queued or running (until stop)
        self.idle.set()
        self._timings: list[int] = []
        self._timings_lock = threading.Lock()
        self.root_fd: int | None = None

    def start(self, root_fd: int) -> None:
        """Scan the tree below an open directory (the caller keeps its descriptor)."""
        try:
            self.root_fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
        except OSError:
            return  # out of descriptors, say: warming the cache is optional
        self._submit(self._scan, "")

    def readahead(self, rel_dir: str, files: list[tuple[str, int]]) -> None:
        """Ask the kernel to read these files (name in rel_dir, bytes) while earlier ones
        are processed."""
        self._submit(self._readahead_all, rel_dir, files)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.root_fd is not None:
            # Closed once the last task is done (or cancelled), never under a running one.
            threading.Thread(target=self._close_root, daemon=True).start()

    def _close_root(self) -> None:
        self.pool.shutdown(wait=True)
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None

    def _submit(self, fn: Callable[..., None], *args: object) -> None:
        if self.root_fd is None or self.stopped.is_set():
            return
        with self._timings_lock:
            self._pending += 1
            self.idle.clear()
        try:
            self.pool.submit(self._counted, fn, *args)
        except RuntimeError:  # shut down: no more work
            self._done()

    def _counted(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        finally:
            self._done()

    def _done(self) -> None:
        with self._timings_lock:
            self._pending -= 1
            if self._pending == 0:
                self.idle.set()

    def _scanning(self) -> bool:
        return not (self.stopped.is_set() or self.warm.is_set())

    def _scan(self, rel: str) -> None:
        if not self._scanning():
            return
        with _opened_dir(self.root_fd, rel) as dir_fd:
            if dir_fd is None:
                return  # gone, or swapped for a link: the walk reports it
            self._scan_below(dir_fd, rel)

    def _scan_below(self, top_fd: int, rel: str) -> None:
        """Warm the subtree below an open directory (the caller keeps `top_fd`)."""
        stack: list[tuple[int, str, list[str]]] = [(top_fd, rel, self._warm(top_fd))]
        try:
            while stack:
                fd, here, children = stack[-1]
                if not children or not self._scanning():
                    stack.pop()
                    if fd != top_fd:
                        os.close(fd)
                    continue
                name = children.pop()
                child = f"{here}/{name}" if here else name
                if self.skip_dir(child):
                    continue
                if child.count("/") < SPREAD_DEPTH or len(stack) >= MAX_DEPTH:
                    self._submit(self._scan, child)
                    continue
                try:
                    child_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # gone, or swapped for a link: the walk reports it
                stack.append((child_fd, child, self._warm(child_fd)))
        finally:
            for fd, _, _ in stack:
                if fd != top_fd:
                    os.close(fd)

    def _warm(self, dir_fd: int) -> list[str]:
        """Stat every entry of a directory that is not a directory; return the names of
        those that are, in reverse order of name."""
        dirs: list[str] = []
        started = time.perf_counter_ns()
        try:
            with os.scandir(dir_fd) as it:
                for entry in it:
                    if not self._scanning():
                        break
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    else:
                        entry.stat(follow_symlinks=False)
        except OSError:
            pass  # the walk itself reports what it cannot read
        self._timed(time.perf_counter_ns() - started)
        dirs.sort(reverse=True)  # popped last first: the walk's (sorted) order
        return dirs

    def _timed(self, elapsed_ns: int) -> None:
        """Count one listed directory; after WARM_SAMPLE of them, decide whether to go on."""
        with self._timings_lock:
            self.scanned += 1
            if len(self._timings) >= WARM_SAMPLE:
                return
            self._timings.append(elapsed_ns)
            if (
                len(self._timings) == WARM_SAMPLE
                and statistics.median(self._timings) < self.warm_dir_ns
            ):
                self.warm.set()

    def _readahead_all(self, rel_dir: str, files: list[tuple[str, int]]) -> None:
        with _opened_dir(self.root_fd, rel_dir) as dir_fd:
            if dir_fd is None:
                return
            for name, length in files:
                if self.stopped.is_set():
                    return
                _readahead(dir_fd, name, length)


@contextlib.contextmanager
def _opened_dir(root_fd: int | None, rel: str) -> Iterator[int | None]:
    """The directory at rel below root_fd, opened component by component without
    following a link (None if that fails); closed on exit."""
    fd: int | None = None
    if root_fd is not None:
        try:
            fd = os.open(".", DIR_FLAGS, dir_fd=root_fd)
            for part in rel.split("/") if rel else []:
                parent = fd
                try:
                    fd = os.open(part, DIR_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
        except OSError:
            fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _readahead(dir_fd: int, name: str, length: int) -> None:
    """Start reading a regular file into the page cache, without waiting for it."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.posix_fadvise(fd, 0, length, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)
