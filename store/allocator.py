"""Keeping a backup's memory where its buffers say it is.

A backup's large buffers (read windows of up to 8 MiB, chunks and their
compressed and sealed copies of up to a few MiB, 16 MiB packs) are allocated
and freed by several threads at once. glibc serves a block of 128 KiB or more
with its own mmap and returns it on free, but after the first such free it
raises that threshold (up to 32 MiB) to the size freed, and from then on
serves these blocks from per-thread arenas, which keep freed memory: on the
1 GiB benchmark corpus the peak RSS of a first backup went from 184 MiB with
the threshold fixed to 243 MiB without (228 MiB with two arenas only).

`fix_mmap_threshold()` pins the threshold at 128 KiB (glibc's initial value),
which also stops the adjustment: every large buffer goes back to the system
when freed. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 128 << 10

_done = False


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold for this process; False where there is no glibc."""
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
    return _done
