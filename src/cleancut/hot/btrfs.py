"""Read-only btrfs snapshots, through the kernel's own ioctls (linux/btrfs.h).

No btrfs-progs at run time and no process to start inside the pause: taking a
snapshot is one ioctl on an open directory. What this module knows is btrfs's
vocabulary (a subvolume's root directory is inode 256; a filesystem has a 16-byte
fsid; a snapshot records the uuid of the subvolume it was taken of); what to
snapshot, where, and when is src/cleancut/hot/fs_snapshot.py's.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

SUBVOLUME_ROOT_INO = 256  # BTRFS_FIRST_FREE_OBJECTID: every subvolume's root directory
NAME_MAX = 4039  # BTRFS_SUBVOL_NAME_MAX

_MAGIC = 0x94


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_MAGIC << 8) | nr


_WRITE, _READ = 1, 2
_VOL_ARGS = 4096  # struct btrfs_ioctl_vol_args and _v2 are both 4096 bytes
_SNAP_CREATE_V2 = _ioc(_WRITE, 23, _VOL_ARGS)
_SNAP_DESTROY = _ioc(_WRITE, 15, _VOL_ARGS)
_SUBVOL_GETFLAGS = _ioc(_READ, 25, 8)
_FS_INFO = _ioc(_READ, 31, 1024)
_GET_SUBVOL_INFO = _ioc(_READ, 60, 504)
SUBVOL_RDONLY = 1 << 1
_V2_NAME_OFFSET = 56  # fd, transid, flags, then a 32-byte union, then the name
_FSID = slice(16, 32)  # in struct btrfs_ioctl_fs_info_args
_UUID, _PARENT_UUID = slice(296, 312), slice(312, 328)  # in btrfs_ioctl_get_subvol_info_args


@dataclass(frozen=True)
class Subvolume:
    """What btrfs says about one subvolume."""

    uuid: bytes
    parent_uuid: bytes  # the subvolume a snapshot was taken of (zeros: none)
    read_only: bool


def fsid(fd: int) -> bytes | None:
    """The btrfs filesystem's id for the directory open at `fd`; None when it is not on
    btrfs (the ioctl is btrfs's own: other filesystems answer ENOTTY or similar)."""
    buf = bytearray(1024)
    try:
        fcntl.ioctl(fd, _FS_INFO, buf)
    except OSError:
        return None
    return bytes(buf[_FSID])


def subvolume(fd: int) -> Subvolume:
    """The subvolume whose root directory is open at `fd` (OSError if it is none)."""
    info = bytearray(504)
    fcntl.ioctl(fd, _GET_SUBVOL_INFO, info)
    flags = bytearray(8)
    fcntl.ioctl(fd, _SUBVOL_GETFLAGS, flags)
    (value,) = struct.unpack("<Q", flags)
    return Subvolume(bytes(info[_UUID]), bytes(info[_PARENT_UUID]), bool(value & SUBVOL_RDONLY))


def is_subvolume_root(fd: int) -> bool:
    return os.fstat(fd).st_ino == SUBVOLUME_ROOT_INO


def snapshot(source_fd: int, dest_dir_fd: int, name: str) -> None:
    """Create a read-only snapshot of the subvolume open at `source_fd`, named `name` in
    the directory open at `dest_dir_fd` (same filesystem). One ioctl; btrfs commits its
    transaction for it, so its cost grows with the data not yet written back, not with
    the subvolume's size."""
    encoded = name.encode()
    if not encoded or len(encoded) > NAME_MAX or b"/" in encoded:
        raise OSError(errno.EINVAL, f"not a snapshot name: {name!r}")
    args = bytearray(_VOL_ARGS)
    struct.pack_into("<qQQ", args, 0, source_fd, 0, SUBVOL_RDONLY)
    args[_V2_NAME_OFFSET:_V2_NAME_OFFSET + len(encoded)] = encoded
    fcntl.ioctl(dest_dir_fd, _SNAP_CREATE_V2, args)


def syncfs(fd: int) -> None:
    """Write back everything dirty on the filesystem holding `fd` (syncfs(2)): a snapshot
    taken right after has little left for its transaction commit to write."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def delete(parent_fd: int, name: str) -> None:
    """Delete the subvolume `name` in the directory open at `parent_fd` (read-only ones
    too; needs CAP_SYS_ADMIN or the user_subvol_rm_allowed mount option)."""
    encoded = name.encode()
    if not encoded or len(encoded) > _VOL_ARGS - 9 or b"/" in encoded:
        raise OSError(errno.EINVAL, f"not a subvolume name: {name!r}")
    args = bytearray(_VOL_ARGS)
    args[8:8 + len(encoded)] = encoded
    fcntl.ioctl(parent_fd, _SNAP_DESTROY, args)
