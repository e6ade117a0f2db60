"""Entries a hostile or unlucky workspace swaps in where a regular file was listed."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path


def swapper(src: Path, outside: Path) -> Callable[[str], None]:
    """A `before_open` seam that replaces `a-pipe` by a FIFO, `b-zero` by /dev/zero's
    device node and `c-link` by a symlink to `outside/secret.txt` (and leaves any other
    entry alone), at the moment between its directory's listing and its open."""

    def swap(rel: str) -> None:
        target = src / rel
        if rel == "a-pipe":
            target.unlink()
            os.mkfifo(target)  # opened blocking, this never returns: no writer will come
        elif rel == "b-zero":
            target.unlink()
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        elif rel == "c-link":
            target.unlink()
            target.symlink_to(outside / "secret.txt")

    return swap
