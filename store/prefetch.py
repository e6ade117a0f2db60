"""Warming the kernel's caches ahead of a walk.

A backup walks its source one directory at a time; on a cold cache each
directory listing and each inode is a disk read the walk waits for. A few
threads listing and stat-ing the tree ahead of it (system calls that release
the GIL) turn those waits into parallel I/O, as restic's concurrent scanner
does. They only read metadata and never influence what is backed up.

Like the walk, they never leave the source and never block on a special file:
every directory is opened relative to its parent's descriptor with O_NOFOLLOW,
every file with O_NOFOLLOW|O_NONBLOCK, and only regular files get a readahead.
Each task owns its own descriptor of the directory it works in (a fresh open of
".", not a dup: a dup shares the directory's read offset with the walk, and a
listing here would leave the walk's listing empty) and closes it when it
finishes or is cancelled.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FILE_FLAGS |= getattr(os, "O_NOATIME", 0)


class MetadataPrefetcher:
    def __init__(self, skip_dir: Callable[[str], bool], threads: int = 4) -> None:
        self.skip_dir = skip_dir
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prefetch")
        self.stopped = threading.Event()

    def start(self, root_fd: int) -> None:
        """Scan the tree below an open directory (the caller keeps its descriptor)."""
        fd = _reopen(root_fd)
        if fd is not None:
            self._submit(fd, self._scan, "")

    def readahead(self, dir_fd: int, files: list[tuple[str, int]]) -> None:
        """Ask the kernel to read these files (name in dir_fd, bytes) while earlier ones
        are processed. The caller keeps dir_fd; the task works on its own descriptor."""
        fd = _reopen(dir_fd)
        if fd is not None:
            self._submit(fd, self._readahead_all, files)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fd: int, fn: Callable[..., None], arg: object) -> None:
        """Run fn(fd, arg) on the pool; fd is closed once the task is done or cancelled."""
        try:
            future = self.pool.submit(fn, fd, arg)
        except RuntimeError:  # stopped: the pool takes no more work
            os.close(fd)
            return
        future.add_done_callback(lambda _f, fd=fd: os.close(fd))

    def _scan(self, dir_fd: int, rel: str) -> None:
        if self.stopped.is_set():
            return
        try:
            with os.scandir(dir_fd) as it:
                for entry in it:
                    if self.stopped.is_set():
                        return
                    if entry.is_dir(follow_symlinks=False):
                        child = f"{rel}/{entry.name}" if rel else entry.name
                        if not self.skip_dir(child):
                            self._scan_child(dir_fd, entry.name, child)
                    else:
                        entry.stat(follow_symlinks=False)
        except OSError:
            pass  # the walk itself reports what it cannot read

    def _scan_child(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # gone, or swapped for a link: the walk reports it
        self._submit(fd, self._scan, rel)

    def _readahead_all(self, dir_fd: int, files: list[tuple[str, int]]) -> None:
        for name, length in files:
            if self.stopped.is_set():
                return
            _readahead(dir_fd, name, length)


def _reopen(dir_fd: int) -> int | None:
    """A new open file description of the same directory (its own listing offset)."""
    try:
        return os.open(".", DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None  # out of descriptors, say: warming the cache is optional


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
