"""Walking and removing directory trees of any depth, without following symlinks.

Python 3.11's os.walk, os.fwalk and shutil.rmtree recurse once per level, so a
tree nested deeper than the interpreter's recursion limit (about 1,000 levels;
a source can be, and backup stores it) ends in a RecursionError. These loops
keep an explicit stack instead, and go through directory descriptors opened
with O_NOFOLLOW, so a directory swapped for a symlink is never followed and no
path grows past PATH_MAX.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Level:
    """One directory of a walk: its path relative to the top ("" for the top itself), an
    open descriptor (valid until the walk moves on), and its entries by kind."""

    rel: str
    fd: int
    dirs: list[str]
    files: list[str]  # everything that is not a directory: files, symlinks, special files


def _entries(fd: int) -> tuple[list[str], list[str]]:
    dirs: list[str] = []
    others: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            is_dir = entry.is_dir(follow_symlinks=False)
            (dirs if is_dir else others).append(entry.name)
    dirs.sort()
    others.sort()
    return dirs, others


def walk(top: str | os.PathLike[str], onerror: Callable[[OSError], None] | None = None
         ) -> Iterator[Level]:
    """Top-down walk of `top`: every directory once, parents before children.

    A caller may remove names from `level.dirs` to skip them. A directory that cannot be
    opened or listed is passed to `onerror` (or skipped) and the walk goes on.
    """
    try:
        root = os.open(top, _DIR_FLAGS)
    except OSError as exc:
        if onerror:
            onerror(exc)
        return
    stack: list[tuple[str, int]] = [("", root)]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                try:
                    dirs, files = _entries(fd)
                except OSError as exc:
                    if onerror:
                        onerror(exc)
                    continue
                level = Level(rel, fd, dirs, files)
                yield level
                for name in reversed(level.dirs):
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        if onerror:
                            onerror(exc)
                        continue
                    stack.append((f"{rel}/{name}" if rel else name, child))
            finally:
                os.close(fd)
    finally:  # a caller that stops early leaves directories not yet visited
        for _, fd in stack:
            os.close(fd)


def _open_writable_dir(name: str, parent: int) -> int:
    """Open a child directory for removal, making it readable and writable if a restored
    mode (0500, 0000) keeps us out. The mode is changed through the opened descriptor
    where possible, never through a symlink."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=parent)  # lstat said directory; only an owner gets here
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    with contextlib.suppress(OSError):
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o700 != 0o700:
            os.fchmod(fd, 0o700)
    return fd


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete `path` and everything below it, at any depth, never following a symlink
    (a symlink below it is removed, not what it points at). Missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    full = os.path.abspath(path)
    parent_fd = os.open(os.path.dirname(full), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        top = _open_writable_dir(os.path.basename(full), parent_fd)
        # each level: its descriptor, its name in the level above, the names left to remove
        stack: list[tuple[int, str, list[str]]] = [(top, "", sorted(os.listdir(top)))]
        try:
            _empty(stack)
        finally:
            for fd, _, _ in stack:
                os.close(fd)
        os.rmdir(os.path.basename(full), dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _empty(stack: list[tuple[int, str, list[str]]]) -> None:
    """Remove everything below the top of `stack`, deepest first; pops what it finishes."""
    while stack:
        fd, _, names = stack[-1]
        if not names:
            _, name, _ = stack.pop()
            os.close(fd)
            if stack:
                os.rmdir(name, dir_fd=stack[-1][0])
            continue
        name = names.pop()
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            child = _open_writable_dir(name, fd)
            stack.append((child, name, sorted(os.listdir(child))))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
