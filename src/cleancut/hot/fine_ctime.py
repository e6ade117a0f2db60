"""Whether a file's ctime changes with every write after it was read (multigrain times).

The racy-timestamp rule (fsio/racy.py) exists because a filesystem stamps times from the
kernel's coarse clock: a second write within one tick of the first leaves the ctime as it
was, so equal metadata does not prove equal content for a file written within a tick of
its copy. Linux 6.13 and later give ext4, XFS, btrfs and tmpfs *multigrain* timestamps:
once an inode's ctime has been read (stat, fstat), its next change takes a fine-grained
time, later than the one read. A copy whose source was fstat'ed before its data was read
is then proven current by an unchanged ctime, however recently the file was written: the
staging mirror need not copy it again (docs/decisions/0020-fine-ctime.md).

Nothing tells userspace which timestamps a filesystem gives, so this module asks twice:
the filesystem must be one whose driver has multigrain times in a kernel that has them
(ext4, XFS, tmpfs; btrfs too, but a btrfs source is captured by a snapshot, whose inodes
are not the live ones that were read), and a probe must see it: the staging lock file, on
the source's filesystem, is fstat'ed, written and fstat'ed again, PROBES times in a row,
and every write must move its ctime. A coarse clock (a tick of 1-10 ms) cannot give
PROBES distinct stamps to writes microseconds apart. The staging directory must be on the
source's filesystem (the same device): the source itself is never written.
"""

from __future__ import annotations

import contextlib
import os

PROBES = 32
# Filesystem types (/proc/self/mountinfo) whose drivers use multigrain timestamps where
# the kernel has them. Not btrfs: see the module docstring.
FINE_TYPES = frozenset({"ext4", "xfs", "tmpfs"})


def fs_type(dev: int) -> str | None:
    """The type of the mounted filesystem with device number `dev`, from mountinfo."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == want and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        return None
    return None


def probe(source: str, lock_fd: int) -> str | None:
    """None when a copy of a file of `source` is proven current by an unchanged ctime;
    else why not (the racy rule then applies). `lock_fd` is the staging lock file, open
    read-write: it is written to and truncated back to empty."""
    try:
        dev = os.stat(source).st_dev
        lock = os.fstat(lock_fd)
    except OSError as exc:
        return f"cannot stat ({exc.strerror})"
    if lock.st_dev != dev:
        return "the staging directory is on another filesystem than the source"
    kind = fs_type(dev)
    if kind not in FINE_TYPES:
        return f"the source's filesystem ({kind or 'unknown'}) has no multigrain ctime here"
    try:
        for i in range(PROBES):
            before = os.fstat(lock_fd).st_ctime_ns
            os.pwrite(lock_fd, b"%d" % (i % 10), 0)
            if os.fstat(lock_fd).st_ctime_ns == before:
                return "a write right after a stat kept the ctime: timestamps are coarse"
    except OSError as exc:
        return f"the ctime probe failed ({exc.strerror})"
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(lock_fd, 0)
    return None
