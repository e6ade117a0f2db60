"""Copy strategies of the staging mirror: how a file's bytes get into staging.

Whole files: reflink (FICLONE shares the source's extents on btrfs and XFS and copies
nothing), else copy_file_range in the kernel, else read/write by hand. Files that
only grew (an append-only transcript or ledger): their new tail only, after a check
that the staged prefix still matches the source (its first and last staged blocks
compared byte for byte).

The tail check is cheap, not a proof: it reads two blocks, so a file rewritten in
place *and* grown, whose first and last previously staged blocks came out identical,
would keep a stale middle. Agents append to such files; a rewrite goes through a new
file and a rename (a new inode), which is always copied whole.
"""

from __future__ import annotations

import errno
import fcntl
import os

FICLONE = 0x40049409  # ioctl: share the source's extents (btrfs, XFS); copies nothing
# Errors of FICLONE / copy_file_range that mean "not here": fall back to the next method.
_UNSUPPORTED = (
    errno.EINVAL,
    errno.EXDEV,
    errno.ENOSYS,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.ENOTTY,
    errno.EBADF,
    errno.EPERM,
    errno.ETXTBSY,
)
_COPY_CHUNK = 1 << 20
# The block compared at each end of the staged prefix before a tail is appended.
CHECK_BLOCK = 4096
# Below this, a grown file is copied whole: the check would cost about as much.
MIN_TAIL_PREFIX = 2 * CHECK_BLOCK


class Copier:
    """Copies file data, remembering the devices where reflink is not supported."""

    def __init__(self) -> None:
        self._no_reflink: set[int] = set()

    def may_clone(self, dev: int) -> bool:
        """Whether a reflink on `dev` is still worth trying."""
        return dev not in self._no_reflink

    def clone(self, fd: int, out: int, dev: int) -> bool:
        """FICLONE all of `fd` into the empty `out`; False (nothing copied) where the
        filesystem cannot, remembered for `dev` when that is for good."""
        if dev in self._no_reflink:
            return False
        try:
            fcntl.ioctl(out, FICLONE, fd)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.ENOSYS):
                self._no_reflink.add(dev)
            return False
        return True

    def whole(self, fd: int, out: int, dev: int) -> tuple[bool, int]:
        """Copy all of `fd` into the empty `out`: (reflinked, bytes)."""
        if dev not in self._no_reflink:
            try:
                fcntl.ioctl(out, FICLONE, fd)
                return True, os.fstat(out).st_size
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.ENOSYS):
                    self._no_reflink.add(dev)
        return False, copy_range(fd, out, 0, 1 << 62)

    def tail(self, fd: int, out: int, staged_size: int, size: int) -> int | None:
        """Bring the staged copy `out` (opened read-write) from `staged_size` bytes to the
        source's `size` by appending the source's tail; None (nothing written) when the
        staged prefix does not match the source's, so the file must be copied whole."""
        if staged_size < MIN_TAIL_PREFIX or size <= staged_size:
            return None
        if os.fstat(out).st_size < staged_size or not _same_prefix(fd, out, staged_size):
            return None
        # A pass interrupted half way may have appended part of a tail: start clean.
        os.ftruncate(out, staged_size)
        return copy_range(fd, out, staged_size, size - staged_size)


def _same_prefix(fd: int, out: int, length: int) -> bool:
    """Whether the first and the last CHECK_BLOCK of `length` bytes agree in both files."""
    for offset in (0, max(0, length - CHECK_BLOCK)):
        count = min(CHECK_BLOCK, length - offset)
        if os.pread(fd, count, offset) != os.pread(out, count, offset):
            return False
    return True


def copy_range(fd: int, out: int, offset: int, count: int) -> int:
    """Copy up to `count` bytes from `fd` at `offset` to `out` at the same offset (fewer if
    the source ends first): in the kernel where it can, else by hand. Bytes copied."""
    copied = 0
    try:
        while copied < count:
            n = os.copy_file_range(fd, out, count - copied, offset + copied, offset + copied)
            if n == 0:
                break
            copied += n
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    # Some filesystems report 0 from copy_file_range without copying: finish by hand.
    while copied < count:
        buf = os.pread(fd, min(_COPY_CHUNK, count - copied), offset + copied)
        if not buf:
            break
        view = memoryview(buf)
        while view:
            written = os.pwrite(out, view, offset + copied)
            view = view[written:]
            copied += written
    return copied
