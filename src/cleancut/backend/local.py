"""A repository in a local directory.

Every write is temp file, fsync, rename, fsync of the directory, so a crash at
any instant leaves either the whole object or none of it (plus, at worst, a
stray temp file that listing ignores). Temp files get random names, created
exclusively (safeio.py): nothing already in the directory is written through.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from cleancut.errors import CleancutError, IntegrityError, NoSpace, ObjectNotFound
from cleancut.fsio.filekind import NotRegular, open_regular
from cleancut.fsio.safeio import create_temp, write_all

from .base import ObjectInfo

TEMP_SUFFIX = ".tmp"
# Objects are opened without blocking (a FIFO planted in the repository would block a
# plain open forever) and kept only if they are regular files (a device reads forever).
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise_os_error(exc: OSError, what: str) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise NoSpace(f"no space left on the repository's filesystem while writing {what}") from exc
    raise CleancutError(f"cannot write {what}: {exc.strerror}") from exc


def readahead(path: str, length: int = 0) -> None:
    """Ask the kernel to start reading a file into the page cache, without waiting.

    On a cold cache this turns one-file-at-a-time reads into parallel I/O.
    """
    try:
        fd = os.open(path, _READ_FLAGS | getattr(os, "O_NOATIME", 0) | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return  # a FIFO or a device: nothing to read ahead (a read reports it)
        os.posix_fadvise(fd, 0, length, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalBackend:
    """Objects are files under `root`; names map to relative paths."""

    remote = False
    write_concurrency = 1
    append_only = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._made_dirs: set[Path] = set()
        self._fds: OrderedDict[str, int] = OrderedDict()  # name -> descriptor, LRU order
        self._users: dict[int, int] = {}  # descriptor -> reads in progress
        self._evicted: set[int] = set()  # out of the LRU, closed after their last read
        self._fd_lock = threading.Lock()

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"invalid object name {name!r}")
        return self.root / name

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._made_dirs:
            return
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(directory.parent)
        self._made_dirs.add(directory)

    def _write_temp(self, path: Path, data: bytes) -> Path:
        self._ensure_dir(path.parent)
        tmp: Path | None = None
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd, name = create_temp(dir_fd, (path.name,), TEMP_SUFFIX)
            finally:
                os.close(dir_fd)
            tmp = path.with_name(name)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            _raise_os_error(exc, path.name)
        assert tmp is not None
        return tmp

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            _raise_os_error(exc, name)

    def put_if_absent(self, name: str, data: bytes) -> bool:
        path = self._path(name)
        tmp = self._write_temp(path, data)
        try:
            # link() fails if the target exists: an atomic create-if-absent.
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            _raise_os_error(exc, name)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def _open(self, name: str) -> int:
        """A descriptor of a stored object that is a regular file; never blocks."""
        try:
            return open_regular(self._path(name))
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"object {name} is missing from the repository") from exc
        except NotRegular as exc:
            raise IntegrityError(
                f"object {name} in the repository is not a regular file "
                f"(mode {stat.filemode(exc.mode)}); not read"
            ) from None

    def get(self, name: str) -> bytes:
        fd = self._open(name)
        try:
            size = os.fstat(fd).st_size
            parts: list[bytes] = []
            while True:  # to the end, even if the file grew since the fstat
                chunk = os.read(fd, max(size, 1 << 16))
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        finally:
            os.close(fd)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        fd = self._acquire(name)
        try:
            return os.pread(fd, length, offset)
        finally:
            self._release(fd)

    def _acquire(self, name: str) -> int:
        """An open descriptor for reading an object, from a small LRU.

        Restores and tree walks read thousands of ranges from a few packs; opening
        the file for each cost more than the read. Objects never change once
        written, and a descriptor of a deleted one still reads what it held. A
        descriptor is closed only when it has left the LRU and no read uses it.
        """
        with self._fd_lock:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._open(name)
                self._fds[name] = fd
                while len(self._fds) > 32:
                    _, old = self._fds.popitem(last=False)
                    if not self._users.get(old):
                        os.close(old)
                        self._users.pop(old, None)
                    else:
                        self._evicted.add(old)
            self._fds.move_to_end(name)
            self._users[fd] = self._users.get(fd, 0) + 1
            return fd

    def _release(self, fd: int) -> None:
        with self._fd_lock:
            self._users[fd] -= 1
            if not self._users[fd] and fd in self._evicted:
                self._evicted.discard(fd)
                del self._users[fd]
                os.close(fd)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # The prefix is either a directory ("data/") or a name prefix within one.
        head, _, _ = prefix.rpartition("/")
        base = self.root / head if head else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in sorted(filenames):
                if filename.endswith(TEMP_SUFFIX):
                    continue
                rel = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if not rel.startswith(prefix):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, filename)).st_size
                except FileNotFoundError:
                    continue
                yield ObjectInfo(rel.replace(os.sep, "/"), size)

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def prefetch(self, name: str, length: int = 0) -> None:
        readahead(str(self._path(name)), length)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
