"""Warming the kernel's caches ahead of a walk.

A backup walks its source one directory at a time; on a cold cache each
directory listing and each inode is a disk read the walk waits for. A few
threads listing and stat-ing the tree ahead of it (system calls that release
the GIL) turn those waits into parallel I/O, as restic's concurrent scanner
does. They only read metadata and never influence what is backed up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .local import readahead


class MetadataPrefetcher:
    def __init__(self, root: str, skip_dir: Callable[[str], bool], threads: int = 4) -> None:
        self.root = root
        self.skip_dir = skip_dir
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prefetch")
        self.stopped = threading.Event()

    def start(self) -> None:
        self.pool.submit(self._scan, self.root, "")

    def _scan(self, path: str, rel: str) -> None:
        if self.stopped.is_set():
            return
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        child = f"{rel}/{entry.name}" if rel else entry.name
                        if not self.skip_dir(child):
                            self.pool.submit(self._scan, entry.path, child)
                    else:
                        entry.stat(follow_symlinks=False)
        except OSError:
            pass  # the walk itself reports what it cannot read

    def readahead(self, files: list[tuple[str, int]]) -> None:
        """Ask the kernel to read these files (path, bytes) while earlier ones are processed."""
        self.pool.submit(_readahead_all, files, self.stopped)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _readahead_all(files: list[tuple[str, int]], stopped: threading.Event) -> None:
    for path, length in files:
        if stopped.is_set():
            return
        readahead(path, length)
