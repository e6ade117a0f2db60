"""The read-only FUSE filesystem of `cleancut mount`, on mfusepy (decision 0014).

    /snapshots/<source>/<time>/...   each snapshot's files, as backed up
    /snapshots/<source>/latest       a symlink to the source's newest snapshot

Files keep their modes, owners, sizes and modification times; symlinks are symlinks.
A snapshot's chain is replayed when its directory is first looked into (states.py);
a read fetches only the blobs it covers (content.py). Nothing can be written: every
change is refused with EROFS. Extended attributes are not stored, so none are shown.
A fault met while serving a request (damaged data, a broken chain) is one line through
`on_problem` and EIO for the program that asked; the mount stays up.

mfusepy picks libfuse 2 when both are installed: FUSE_LIBRARY_NAME asks for libfuse 3
before it is imported (that import may raise OSError: no libfuse at all).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy  # noqa: E402

from cleancut.errors import CleancutError  # noqa: E402
from cleancut.repository.repository import Repository  # noqa: E402
from cleancut.repository.snapshot import Snapshot  # noqa: E402
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node  # noqa: E402

from .catalog import LATEST, Catalog  # noqa: E402
from .content import BlobCache, FileContent  # noqa: E402
from .states import Listing, SnapshotStates  # noqa: E402

SNAPSHOTS = "snapshots"
VIRTUAL_DIR_MODE = 0o555
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass(frozen=True)
class Place:
    """What a path of the mount names: a directory of the catalog, `latest`, or an entry
    (or the root, rel '') of a snapshot."""

    kind: str  # "dir" (catalog), "latest", "snapshot"
    names: list[str]
    snapshot: Snapshot | None = None
    rel: str = ""
    target: str = ""


def _ns(time_text: str) -> int:
    """A record's time in nanoseconds; 0 for a time that is not ISO 8601 (a forged
    record must not stop the mount)."""
    try:
        moment = datetime.fromisoformat(time_text.replace("Z", "+00:00"))
        return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    except (ValueError, OverflowError, OSError):
        return 0


def _error(code: int) -> OSError:
    return mfusepy.FuseOSError(code)


class SnapshotFS(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(
        self,
        repo: Repository,
        catalog: Catalog,
        on_ready: Callable[[], None],
        on_problem: Callable[[str], None],
        cache: BlobCache | None = None,
    ) -> None:
        self.repo = repo
        self.catalog = catalog
        self.states = SnapshotStates(repo)
        self.cache = cache or BlobCache(repo)
        self.on_ready = on_ready
        self.on_problem = on_problem
        self.handles: dict[int, FileContent] = {}
        self.numbers = itertools.count(1)
        times = [s.time for src in catalog.sources.values() for s in src.snapshots.values()]
        self.mount_ns = _ns(max(times)) if times else 0

    # --- paths ---------------------------------------------------------------

    def _place(self, path: str) -> Place:
        names = [p for p in path.split("/") if p]
        if len(names) <= 1:
            if names and names[0] != SNAPSHOTS:
                raise _error(errno.ENOENT)
            return Place("dir", names)
        source = self.catalog.sources.get(names[1])
        if source is None:
            raise _error(errno.ENOENT)
        if len(names) == 2:
            return Place("dir", names)
        if names[2] == LATEST and source.latest:
            if len(names) > 3:
                raise _error(errno.ENOTDIR)  # the kernel follows the link itself
            return Place("latest", names, target=source.latest)
        snap = source.snapshots.get(names[2])
        if snap is None:
            raise _error(errno.ENOENT)
        return Place("snapshot", names, snap, "/".join(names[3:]))

    def _node(self, place: Place) -> Node | None:
        """The snapshot entry a place names (None: the snapshot's root)."""
        assert place.snapshot is not None
        if not place.rel:
            return None
        node = self._listing(place.snapshot).state.get(place.rel)
        if node is None:
            raise _error(errno.ENOENT)
        return node

    def _listing(self, snapshot: Snapshot) -> Listing:
        """The snapshot's state, replayed on first use; a fault is one line and EIO."""
        try:
            return self.states.listing(snapshot)
        except CleancutError as exc:
            self.on_problem(f"snapshot {snapshot.id[:12]}: {exc}")
            raise _error(errno.EIO) from None

    # --- metadata ------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        place = self._place(path)
        if place.kind == "dir":
            return self._dir_attrs(VIRTUAL_DIR_MODE, self.mount_ns)
        if place.kind == "latest":
            size = len(os.fsencode(place.target))
            return self._attrs(stat.S_IFLNK | 0o777, size, self.mount_ns)
        assert place.snapshot is not None
        node = self._node(place)
        if node is None:
            return self._dir_attrs(VIRTUAL_DIR_MODE, _ns(place.snapshot.time))
        if node.type == DIR:
            return self._dir_attrs(node.mode, node.mtime_ns, node.uid, node.gid)
        if node.type == SYMLINK:
            target = os.fsencode(node.target or "")
            return self._attrs(stat.S_IFLNK | 0o777, len(target), node.mtime_ns, node)
        return self._attrs(stat.S_IFREG | node.mode, node.size, node.mtime_ns, node)

    @staticmethod
    def _attrs(mode: int, size: int, mtime_ns: int, node: Node | None = None) -> dict[str, Any]:
        return {
            "st_mode": mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_mtime": mtime_ns,
            "st_atime": mtime_ns,
            "st_ctime": mtime_ns,
            "st_uid": node.uid if node else os.getuid(),
            "st_gid": node.gid if node else os.getgid(),
        }

    @staticmethod
    def _dir_attrs(
        mode: int, mtime_ns: int, uid: int | None = None, gid: int | None = None
    ) -> dict[str, Any]:
        """A directory's attributes; the mount's own directories (no uid given) belong
        to the user who mounted it."""
        return {
            "st_mode": stat.S_IFDIR | mode,
            "st_nlink": 2,
            "st_size": 0,
            "st_mtime": mtime_ns,
            "st_atime": mtime_ns,
            "st_ctime": mtime_ns,
            "st_uid": os.getuid() if uid is None else uid,
            "st_gid": os.getgid() if gid is None else gid,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        place = self._place(path)
        if place.kind == "latest":
            raise _error(errno.ENOTDIR)
        if place.kind == "dir":
            if not place.names:
                return [".", "..", SNAPSHOTS]
            if len(place.names) == 1:
                return [".", "..", *self.catalog.sources]
            source = self.catalog.sources[place.names[1]]
            return [".", "..", *source.snapshots, *([LATEST] if source.latest else [])]
        assert place.snapshot is not None
        node = self._node(place)
        if node is not None and node.type != DIR:
            raise _error(errno.ENOTDIR)
        return [".", "..", *self._listing(place.snapshot).children.get(place.rel, [])]

    def readlink(self, path: str) -> str:
        place = self._place(path)
        if place.kind == "latest":
            return place.target
        node = self._node(place) if place.kind == "snapshot" else None
        if node is None or node.type != SYMLINK:
            raise _error(errno.EINVAL)
        return node.target or ""

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # --- file data -------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        if flags & WRITE_FLAGS:
            raise _error(errno.EROFS)
        place = self._place(path)
        node = self._node(place) if place.kind == "snapshot" else None
        if node is None or node.type != FILE:
            raise _error(errno.EISDIR if place.kind != "latest" else errno.EINVAL)
        try:
            content = FileContent(self.repo, self.cache, node, path)
        except CleancutError as exc:
            self.on_problem(str(exc))
            raise _error(errno.EIO) from None
        number = next(self.numbers)
        self.handles[number] = content
        return number

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        content = self.handles.get(fh)
        if content is None:
            raise _error(errno.EBADF)
        try:
            return content.read(offset, size)
        except CleancutError as exc:
            self.on_problem(f"{path}: {exc}")
            raise _error(errno.EIO) from None

    def release(self, path: str, fh: int) -> int:
        self.handles.pop(fh, None)
        return 0

    # --- lifecycle ------------------------------------------------------------

    def init(self, path: str) -> None:
        self.on_ready()
