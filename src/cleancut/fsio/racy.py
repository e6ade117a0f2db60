"""The racy-timestamp rule: when equal metadata does not prove equal content.

A file is known unchanged when its size, times and inode match what they were when it
was last read, unless it was written within one timestamp tick of that read: a second
write in the same tick leaves the metadata as it was. Both the archiver (against the
parent snapshot's scan) and the staging mirror (against its last copy) ask this
question, with one answer (docs/architecture.md, "The racy-timestamp window").

How long a tick is depends on the filesystem. Where timestamps carry nanoseconds (ext4
with large inodes, XFS, btrfs, tmpfs), the kernel stamps them from its coarse clock, a
tick of 1-10 ms: a 50 ms window covers it. Where they carry whole seconds (ext4 with
128-byte inodes, ext3, many NFS servers) or two (FAT), a window of 2 s is needed. A
timestamp with no fraction of a second is taken to come from such a filesystem (a
nanosecond clock lands on a whole second once in a billion stamps, and then the file
is only read once more).
"""

from __future__ import annotations

FINE_WINDOW_NS = 50_000_000
"""The window for nanosecond timestamps: several ticks of the kernel's coarse clock."""

COARSE_WINDOW_NS = 2_000_000_000
"""The window for whole-second timestamps (FAT's two-second ones included)."""

_SECOND_NS = 1_000_000_000


def window_ns(stamp_ns: int) -> int:
    """How close to a read a write with this timestamp may have been unseen."""
    return COARSE_WINDOW_NS if stamp_ns % _SECOND_NS == 0 else FINE_WINDOW_NS


def is_racy(stamp_ns: int, read_at_ns: int) -> bool:
    """Was a file with this mtime/ctime possibly written again, unseen, after `read_at_ns`?

    True when the stamp is not at least one window older than the read: the content
    must be read again even though the metadata matches.
    """
    return stamp_ns >= read_at_ns - window_ns(stamp_ns)
