"""Directory work of a restore spread over a few threads, one depth at a time.

Creating twelve thousand directories, and later setting their owners, modes and times,
is kernel work (inode allocation, directory entries) that a single thread does one
call after another while the other core idles. Within one depth no directory depends
on another, so each depth is cut into a few contiguous slices (siblings stay together:
they share their parent's lock in the kernel) done by as many threads, each with its
own directory descriptors (files.DirFds). Depths come one after another: shallowest
first to create (a parent exists before its children), deepest first to set metadata
(a parent made unsearchable after its children are done). A failure in any thread is
raised once every thread of that depth has stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .files import DirFds

LEVEL_THREADS = 4  # threads per depth
PARALLEL_MIN = 64  # directories in a depth worth handing to threads


def depth(rel: str) -> int:
    return rel.count("/") + 1 if rel else 0


def by_level(
    root_fd: int,
    rels: Sequence[str],
    act: Callable[[DirFds, str], None],
    deepest_first: bool = False,
) -> None:
    """Call `act(fds, rel)` for each directory `rel`, depth by depth, each depth's
    directories in their given order over up to LEVEL_THREADS threads."""
    levels: dict[int, list[str]] = {}
    for rel in rels:
        levels.setdefault(depth(rel), []).append(rel)
    with ThreadPoolExecutor(max_workers=LEVEL_THREADS) as pool:
        for level in sorted(levels, reverse=deepest_first):
            batch = levels[level]
            parts = 1 if len(batch) < PARALLEL_MIN else LEVEL_THREADS
            size = -(-len(batch) // parts)
            slices = [batch[i : i + size] for i in range(0, len(batch), size)]
            futures = [pool.submit(_run, root_fd, part, act) for part in slices]
            for future in futures:
                future.result()


def _run(root_fd: int, part: list[str], act: Callable[[DirFds, str], None]) -> None:
    fds = DirFds(root_fd, limit=64)
    try:
        for rel in part:
            act(fds, rel)
    finally:
        fds.close()
