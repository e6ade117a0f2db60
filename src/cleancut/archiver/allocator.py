"""Keeping a backup's memory where its buffers say it is.

A backup's large buffers (read windows of up to 8 MiB, chunks and their
compressed and sealed copies of up to a few MiB, 16 MiB packs) are allocated
and freed by several threads at once. glibc serves a block of 128 KiB or more
with its own mmap and returns it on free, but after the first such free it
raises that threshold (up to 32 MiB) to the size freed, and from then on
serves these blocks from per-thread arenas, which keep freed memory.

`fix_mmap_threshold()` pins the threshold at 1 MiB, which also stops the
adjustment: windows, packs and the larger chunks go back to the system when
freed. Pinning it also pins the heap's trim threshold, which would otherwise
follow at twice the mmap threshold; left at its 128 KiB start it made the heap
shrink and grow again all the time (0.3 s more system time in an unchanged
backup), so it is set to 8 MiB. Measured on the 1 GiB benchmark corpus, first
backup, one run each on a loaded machine (CPU user + system, peak RSS):

| allocator settings | CPU | peak RSS |
|---|---|---|
| glibc's own | 8.7 s | 239 MiB |
| mmap 128 KiB, trim 8 MiB | 9.4 s | 176 MiB |
| mmap 1 MiB, trim 8 MiB (chosen) | 8.7 s | 190 MiB |

Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20

_done = False


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap and trim thresholds for this process; False without glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and others: no mallopt, and no growing threshold either
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if _done:
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return _done
