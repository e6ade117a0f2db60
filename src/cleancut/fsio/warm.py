"""Warming the kernel's metadata caches for a tree before it is walked.

A backup's walk waits on the disk for every directory listing and every inode
when the caches are cold, and it can only start once the interpreter has
loaded its modules, derived the key and planned the snapshot: a second or more
on a cold start. A scan started as soon as the source is known lists the tree
and stats its entries meanwhile; the walk then finds the directories and
inodes in memory.

The scan runs in a child process forked before the engine's modules load, not
in a thread: a thread needs the GIL after every system call, and while the main
thread imports (holding it) it got one about every switch interval (5 ms), so it
listed under 2,000 of the corpus's 11,950 directories before the walk started
and then walked beside it, doubling the walk's cold reads
(docs/decisions/0011-unchanged-backup-path.md). The child shares nothing
with the parent but the kernel's caches: it runs only the scan below and leaves
with os._exit (no atexit handler, no buffered output flushed), dies with its
parent (PR_SET_DEATHSIG), and the parent ends it (SIGKILL, then waitpid) when
its walk is done. Where fork is unavailable it does nothing.

It reads metadata only and decides nothing: what the backup stores is decided
by the walk's own listing and stat. Like the walk, it never leaves the tree:
every directory below the top is opened relative to its parent's descriptor
with O_NOFOLLOW|O_DIRECTORY|O_NONBLOCK, so a symlink is never followed and a
special file never blocks it; it holds one descriptor per level of the
directory it is in. A directory is warmed by that open (its inode is read),
every other entry by one lstat. Errors are skipped: warming is optional.

A cache that is warm already (a workspace backed up every few minutes) gains
nothing from the scan: the child times its first WARM_SAMPLE directories and
stops if their median listing took under WARM_DIR_NS (a cold directory costs a
disk read, a warm one a few microseconds; archiver/prefetch.py makes the same
guess). The guess decides speed only, never what the backup reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from typing import NoReturn

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TOP_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WARM_SAMPLE = 32  # directories timed before the scan decides whether the cache is warm
WARM_DIR_NS = 25_000  # median time to list and stat a directory below which it is warm


class _Warm(Exception):
    """The first directories listed fast: the cache is warm, the scan stops."""


class Warmer:
    """Scan each (prefix, top) directory in turn; `skip(rel)` names directories not to
    enter (rel is prefix/path below the top). start() runs the scan in a child process,
    scan() in the caller."""

    def __init__(
        self, tops: list[tuple[str, str | os.PathLike[str]]], skip: Callable[[str], bool]
    ) -> None:
        self.tops = tops
        self.skip = skip
        self.stopped = False
        self.dirs = 0  # directories listed (by scan() in this process)
        self.entries = 0  # entries stat-ed or opened
        self.pid: int | None = None
        self.timings: list[int] = []  # ns per directory, the first WARM_SAMPLE
        self.warm_dir_ns = WARM_DIR_NS

    def start(self) -> Warmer:
        """Fork the child that scans; the parent returns at once."""
        if not hasattr(os, "fork"):
            return self
        try:
            pid = os.fork()
        except OSError:
            return self  # no process to spare: warming is optional
        if pid == 0:
            self._child()
        self.pid = pid
        return self

    def stop(self) -> None:
        """End the child (finished or not) and reap it; never blocks on the disk."""
        self.stopped = True
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def scan(self) -> None:
        """The scan itself, in this process; it stops early on a warm cache."""
        try:
            for prefix, top in self.tops:
                with contextlib.suppress(OSError):
                    self._scan(prefix, top)
        except _Warm:
            return

    def _child(self) -> NoReturn:
        code = 0
        try:
            _die_with_parent()
            self.scan()
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def _scan(self, prefix: str, top: str | os.PathLike[str]) -> None:
        # The top is followed if it is a symlink, as the walk does with its source.
        root = os.open(top, TOP_FLAGS)
        # _subdirs never raises: a listing that fails is an empty one.
        stack: list[tuple[str, int, list[str]]] = [(prefix, root, self._subdirs(prefix, root))]
        try:
            while stack:
                rel, fd, pending = stack[-1]
                if not pending:
                    stack.pop()
                    os.close(fd)
                    continue
                name = pending.pop()
                child_rel = f"{rel}/{name}" if rel else name
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                self.entries += 1
                stack.append((child_rel, child, self._subdirs(child_rel, child)))
        finally:
            for _, fd, _ in stack:
                os.close(fd)

    def _subdirs(self, rel: str, fd: int) -> list[str]:
        """List one directory, lstat its non-directories, return the subdirectories to
        enter (in reverse name order, so they are entered in the walk's order)."""
        subdirs: list[str] = []
        started = time.perf_counter_ns()
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        child_rel = f"{rel}/{entry.name}" if rel else entry.name
                        if not self.skip(child_rel):
                            subdirs.append(entry.name)
                        continue
                    with contextlib.suppress(OSError):
                        entry.stat(follow_symlinks=False)
                        self.entries += 1
        except OSError:
            return []
        self.dirs += 1
        self._time(time.perf_counter_ns() - started)
        subdirs.sort(reverse=True)
        return subdirs

    def _time(self, ns: int) -> None:
        if len(self.timings) < WARM_SAMPLE:
            self.timings.append(ns)
            if len(self.timings) == WARM_SAMPLE and statistics.median(self.timings) < (
                self.warm_dir_ns
            ):
                raise _Warm


def _die_with_parent() -> None:
    """SIGKILL this process when its parent exits (Linux); elsewhere the parent's stop()."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
