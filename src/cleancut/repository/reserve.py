"""The prune reserve: space set aside so that prune can run on a full filesystem.

Prune must write before it can delete (its lock, index segments that replace the
ones listing unused packs, its mark record), so on a repository whose filesystem
is full it could never start. The object `reserve/prune` (random bytes, so that a
compressing or deduplicating filesystem really allocates them) is created with the
repository and refilled after each prune. When a write of prune fails for lack of
space, prune deletes the reserve and runs again in the room it leaves; it refills
the reserve at the end with what fits (smaller sizes first if need be), so that the
next run, which deletes the packs marked before, can start too.

Only a local repository has one: object storage does not fill up that way.
"""

from __future__ import annotations

import os

from cleancut.backend.base import Backend
from cleancut.errors import NoSpace, ObjectNotFound

RESERVE_NAME = "reserve/prune"
RESERVE_SIZE = 2 * 1024 * 1024  # room for the lock, rewritten index segments, the record
MIN_RESERVE = 16 * 1024


def reserve_size(backend: Backend) -> int:
    """The bytes the reserve holds now (0 if there is none)."""
    try:
        return len(backend.get(RESERVE_NAME))
    except ObjectNotFound:
        return 0


def refill(backend: Backend) -> int:
    """Make the reserve RESERVE_SIZE bytes if it fits, else the largest halving of it
    that does (down to MIN_RESERVE). Returns its size; 0 when nothing fits. Never
    raises for lack of space: a missing reserve is reported, not fatal."""
    if not _is_local(backend):
        return 0
    current = reserve_size(backend)
    size = RESERVE_SIZE
    while size >= MIN_RESERVE and size > current:
        try:
            backend.put(RESERVE_NAME, os.urandom(size))
            return size
        except NoSpace:
            size //= 2
    return current


def release(backend: Backend) -> int:
    """Delete the reserve; the bytes it freed (0 if there was none)."""
    size = reserve_size(backend)
    if size:
        backend.delete(RESERVE_NAME)
    return size


def _is_local(backend: Backend) -> bool:
    """A directory on this host (the wrappers pass on the backend's own answer)?"""
    return not backend.remote
