"""Warming the kernel's metadata caches for a tree before it is walked.

A backup's walk waits on the disk for every directory listing and every inode
when the caches are cold, and it can only start once the interpreter has
loaded its modules, derived the key and planned the snapshot: a second or more
on a cold start. One thread started as soon as the source is known lists the
tree and stats its entries meanwhile (system calls that release the GIL, so
they overlap the imports and the key derivation on another core); the walk
then finds the directories and inodes in memory.

It reads metadata only and decides nothing: what the backup stores is decided
by the walk's own listing and stat. Like the walk, it never leaves the tree:
every directory below the top is opened relative to its parent's descriptor
with O_NOFOLLOW|O_DIRECTORY|O_NONBLOCK, so a symlink is never followed and a
special file never blocks it; it holds one descriptor per level of the
directory it is in. A directory is warmed by that open (its inode is read),
every other entry by one lstat. Errors are skipped: warming is optional.
One thread only: on this kind of disk more threads did not make a cold scan
faster (docs/decisions/0011-unchanged-backup-path.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TOP_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC


class Warmer:
    """Scan each (prefix, top) directory in turn on a daemon thread; `skip(rel)` names
    directories not to enter (rel is prefix/path below the top)."""

    def __init__(
        self, tops: list[tuple[str, str | os.PathLike[str]]], skip: Callable[[str], bool]
    ) -> None:
        self.tops = tops
        self.skip = skip
        self.stopped = threading.Event()
        self.done = threading.Event()
        self.dirs = 0  # directories listed
        self.entries = 0  # entries stat-ed or opened
        self._thread = threading.Thread(target=self._run, name="warm", daemon=True)

    def start(self) -> Warmer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop soon (the thread finishes its current listing); never waits."""
        self.stopped.set()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        try:
            for prefix, top in self.tops:
                with contextlib.suppress(OSError):
                    self._scan(prefix, top)
        finally:
            self.done.set()

    def _scan(self, prefix: str, top: str | os.PathLike[str]) -> None:
        # The top is followed if it is a symlink, as the walk does with its source.
        if self.stopped.is_set():
            return
        root = os.open(top, TOP_FLAGS)
        # _subdirs never raises: a listing that fails is an empty one.
        stack: list[tuple[str, int, list[str]]] = [(prefix, root, self._subdirs(prefix, root))]
        try:
            while stack and not self.stopped.is_set():
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
        subdirs.sort(reverse=True)
        return subdirs
