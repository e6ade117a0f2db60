"""Restore: write a snapshot's tree into a target directory, and nowhere else.

Every path is built from directory file descriptors opened with O_NOFOLLOW,
one validated name at a time, so no entry ("../x", "/etc/passwd", a name with
a slash, a symlink followed by a path under it) can make a write land outside
the target. Each file is written under a short random temporary name created
exclusively (safeio.py: nothing planted there is opened, followed or waited
on, and no name, however long, can collide with it), every blob is verified
against its ID as it is written, and only a complete, verified file is
renamed into place: a damaged blob leaves no corrupted file behind. Blobs of
zeros are skipped over rather than written, so sparse files come back sparse
on filesystems with holes.

A snapshot of several named directories (decision 0006) restores as one
directory per name under the target; `only_dir` restores one of them, its
contents straight into the target (the way each goes back to its own place).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .chain import snapshot_state
from .errors import CleancutError, NoSpace, PathNotFound
from .pack import pack_name
from .pathtext import shown_path
from .repository import Repository
from .safeio import create_temp, unlink_quietly, write_all
from .snapshot import Snapshot
from .sourcedirs import recorded_dirs
from .state import State
from .tree import DIR, FILE, SYMLINK, Node

RESTORE_THREADS = 4
PREFETCH_AHEAD = 512 << 20
HOLE_BLOCK = 64 << 10  # a run of zeros this long, so aligned, is skipped rather than written


@dataclass
class RestoreResult:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes_written: int = 0
    refused: list[str] = field(default_factory=list)  # unsafe entries, not written
    damaged: list[str] = field(default_factory=list)  # files whose data failed verification
    errors: list[str] = field(default_factory=list)  # other per-entry failures


@dataclass
class _FileTask:
    dir_rel: str
    rel: str
    node: Node


def _included(rel: str, includes: list[str]) -> bool:
    if not includes:
        return True
    return any(
        rel == inc or rel.startswith(inc + "/") or inc.startswith(rel + "/") for inc in includes
    )


def _zero(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] is all zero bytes (most blocks fail on the first or last)."""
    return data[start] == 0 and data[end - 1] == 0 and data.count(0, start, end) == end - start


def _write_sparse(fd: int, data: bytes, offset: int) -> None:
    """Write `data` at `offset`, leaving its all-zero blocks unwritten: a hole where the
    filesystem has them, zeros read back where it has not (the file is new and empty)."""
    view = memoryview(data)
    run = -1  # where the data to write starts, or -1
    for start in range(0, len(data), HOLE_BLOCK):
        end = min(start + HOLE_BLOCK, len(data))
        if not _zero(data, start, end):
            run = start if run < 0 else run
        elif run >= 0:
            write_all(fd, view[run:start], offset + run)
            run = -1
    if run >= 0:
        write_all(fd, view[run:], offset + run)


class _DirFds:
    """Open directory fds under the target, by relative path; a small LRU."""

    def __init__(self, root_fd: int, limit: int = 128) -> None:
        self.root_fd = root_fd
        self.fds: OrderedDict[str, int] = OrderedDict()
        self.limit = limit

    def get(self, rel: str) -> int:
        """The open descriptor of directory `rel`, opening each missing level from the
        nearest open ancestor down (a loop, not recursion: a tree may be nested deeper
        than Python's recursion limit)."""
        if not rel:
            return self.root_fd
        fd = self.fds.get(rel)
        if fd is not None:
            self.fds.move_to_end(rel)
            return fd
        missing: list[str] = []
        base = rel
        while base and base not in self.fds:
            missing.append(base)
            base = base.rpartition("/")[0]
        fd = self.fds[base] if base else self.root_fd
        if base:
            self.fds.move_to_end(base)
        for level in reversed(missing):
            name = level.rpartition("/")[2]
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            self.fds[level] = fd
            self._evict(keep=level)
        return fd

    def _evict(self, keep: str) -> None:
        """Close the least recently used descriptors beyond the limit, never `keep`'s (the
        parent of the next level opened)."""
        while len(self.fds) > self.limit:
            old_rel = next(iter(self.fds))
            if old_rel == keep:
                self.fds.move_to_end(old_rel)
                continue
            os.close(self.fds.pop(old_rel))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Restorer:
    def __init__(
        self,
        repo: Repository,
        snapshot: Snapshot,
        target: Path,
        includes: list[str] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        only_dir: str | None = None,
    ) -> None:
        self.repo = repo
        self.only_dir = only_dir
        self.top: Node | None = None  # the named directory restored as the target itself
        self.snapshot = snapshot
        self.target = target
        self.includes = [i.strip("/") for i in includes or [] if i.strip("/")]
        self.result = RestoreResult()
        self.on_bytes = on_bytes
        self.is_root = os.geteuid() == 0
        self.lock = threading.Lock()
        self.root_fd = -1
        self.names: dict[str, set[str]] = {}  # directory -> the names restore puts in it

    def run(self) -> RestoreResult:
        # An incremental's state is its chain replayed from the full, every link verified
        # first; names that cannot be paths are refused, not written.
        # Trees live in packs of their own: ask for them first, so an object store serves
        # whole packs instead of one ranged GET per directory.
        for pack_id in self.repo.cache.tree_packs()[:64]:
            self.repo.backend.prefetch(pack_name(pack_id))
        state = snapshot_state(self.repo, self.snapshot, self.result.refused)
        if self.only_dir is not None:
            state = self._one_dir(state, self.only_dir)
        for inc in self.includes:
            if inc not in state:
                raise PathNotFound(f"no {inc!r} in snapshot {self.snapshot.id[:12]}")
        self.target.mkdir(parents=True, exist_ok=True)
        root_fd = self.root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY)
        self.fds = _DirFds(root_fd)
        files: list[_FileTask] = []
        links: list[tuple[str, str, Node]] = []
        dirs: list[tuple[str, Node]] = []
        try:
            if self.top is not None:  # its mode and times go on the target, set last
                dirs.append(("", self.top))
            self._plan(state, files, links, dirs)
            self._write_files(files)
            for dir_rel, rel, node in links:
                self._symlink(dir_rel, rel, node)
            for rel, node in reversed(dirs):  # deepest first: children change a dir's mtime
                self._dir_metadata(rel, node)
        finally:
            self.fds.close()
            os.close(root_fd)
        return self.result

    def _one_dir(self, state: State, name: str) -> State:
        """The state below one named directory, as if it were the snapshot's root."""
        known = recorded_dirs(self.snapshot.dirs)
        if name not in known:
            have = ", ".join(sorted(known)) or "none: it is a snapshot of one directory"
            raise PathNotFound(
                f"no directory {name!r} in snapshot {self.snapshot.id[:12]} (its directories: "
                f"{have})"
            )
        node = state.get(name)
        if node is None or node.type != DIR:
            raise PathNotFound(f"no directory {name!r} in snapshot {self.snapshot.id[:12]}")
        self.top = node
        prefix = name + "/"
        return {rel[len(prefix):]: n for rel, n in state.items() if rel.startswith(prefix)}

    # --- planning: directories are created in path order ------------------

    def _plan(
        self,
        state: State,
        files: list[_FileTask],
        links: list[tuple[str, str, Node]],
        dirs: list[tuple[str, Node]],
    ) -> None:
        made = {""}  # directories that exist in the target and may hold entries
        for rel in state:
            dir_rel, _, name = rel.rpartition("/")
            self.names.setdefault(dir_rel, set()).add(name)
        for rel in sorted(state, key=lambda p: p.split("/")):
            node = state[rel]
            dir_rel = rel.rpartition("/")[0]
            if dir_rel not in made:
                continue  # its directory was refused or left out
            if not _included(rel, self.includes):
                continue
            if node.type == DIR:
                if self._mkdir(dir_rel, rel, node):
                    made.add(rel)
                    dirs.append((rel, node))
                    self.result.dirs += 1
            elif node.type == FILE:
                files.append(_FileTask(dir_rel, rel, node))
            elif node.type == SYMLINK:
                links.append((dir_rel, rel, node))

    def _mkdir(self, dir_rel: str, rel: str, node: Node) -> bool:
        parent = self.fds.get(dir_rel)
        name = rel.rpartition("/")[2]  # entries are created by their path, never the node
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.result.refused.append(
                    f"{rel!r}: something that is not a directory (a symlink?) is in the way"
                )
                return False
        return True

    # --- files ------------------------------------------------------------

    def _write_files(self, files: list[_FileTask]) -> None:
        """Files are restored by a few threads at once: creating, writing and renaming are
        system calls that release the GIL, and a slow filesystem is the usual bottleneck."""
        local = threading.local()
        opened: list[_DirFds] = []

        def fds() -> _DirFds:
            mine = getattr(local, "fds", None)
            if mine is None:
                mine = local.fds = _DirFds(self.root_fd, limit=64)
                with self.lock:
                    opened.append(mine)
            return mine

        stop = threading.Event()
        hinter = threading.Thread(target=self._prefetch_packs, args=(files, stop), daemon=True)
        hinter.start()
        try:
            with ThreadPoolExecutor(max_workers=RESTORE_THREADS) as pool:
                for _ in pool.map(lambda task: self._write_file(task, fds()), files):
                    pass
        finally:
            stop.set()
            for mine in opened:  # every worker has stopped: no descriptor is in use
                mine.close()

    def _prefetch_packs(self, files: list[_FileTask], stop: threading.Event) -> None:
        """Hint the packs in the order restore needs them, up to PREFETCH_AHEAD ahead."""
        order: dict[str, int] = {}
        for task in files:
            for blob_hex in task.node.content:
                loc = self.repo.cache.find_blob(bytes.fromhex(blob_hex))
                if loc is not None and loc.pack_id not in order:
                    order[loc.pack_id] = loc.entry.offset + loc.entry.length
        hinted = 0
        for pack_id, size in order.items():
            while hinted - self.result.bytes_written > PREFETCH_AHEAD:
                if stop.wait(0.05):
                    return
            if stop.is_set():
                return
            self.repo.backend.prefetch(pack_name(pack_id))
            hinted += size

    def _write_file(self, task: _FileTask, fds: _DirFds) -> None:
        """Write one file under a temporary name, verify it, rename it into place.

        Damaged data and entries that cannot be written (a directory in the way,
        a permission) are recorded and the restore goes on; a full disk stops it.
        """
        node = task.node
        name = task.rel.rpartition("/")[2]  # the path decides where, never the node
        parent, tmp = -1, ""
        try:
            parent = fds.get(task.dir_rel)
            fd, tmp = create_temp(parent, self.names.get(task.dir_rel, ()))
            try:
                written = self._write_verified(fd, node)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except CleancutError as exc:
            unlink_quietly(tmp, parent)
            self.result.damaged.append(f"{shown_path(task.rel)}: {exc}")
            return
        except OSError as exc:
            unlink_quietly(tmp, parent)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(
                    f"no space left on the target filesystem while writing "
                    f"{shown_path(task.rel)}"
                ) from exc
            self.result.errors.append(f"{shown_path(task.rel)}: cannot write ({exc.strerror})")
            return
        except BaseException:
            unlink_quietly(tmp, parent)  # nothing is left behind, whatever stops the write
            raise
        with self.lock:
            self.result.files += 1
            self.result.bytes_written += written

    def _write_verified(self, fd: int, node: Node) -> int:
        """Write a file's blobs at their offsets; blocks of zeros become holes."""
        written = 0
        for blob_hex in node.content:
            data = self.repo.load_blob(bytes.fromhex(blob_hex))  # verified against its ID
            _write_sparse(fd, data, written)
            written += len(data)
            if self.on_bytes:
                self.on_bytes(len(data))
        if written != node.size:
            raise CleancutError(f"size {written} differs from the recorded {node.size}")
        os.ftruncate(fd, written)  # the size, when the file ends in a hole
        self._set_file_metadata(fd, node)
        return written

    def _set_file_metadata(self, fd: int, node: Node) -> None:
        if self.is_root:
            with contextlib.suppress(OSError):
                os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, node.mode)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))

    # --- symlinks and directories -----------------------------------------

    def _symlink(self, dir_rel: str, rel: str, node: Node) -> None:
        parent = self.fds.get(dir_rel)
        name = rel.rpartition("/")[2]
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            self.result.refused.append(f"{rel!r}: a directory is in the way of the symlink")
            return
        try:
            os.symlink(node.target or "", name, dir_fd=parent)
        except OSError as exc:  # a target too long, something created there meanwhile
            self.result.errors.append(f"{shown_path(rel)}: cannot create ({exc.strerror})")
            return
        except ValueError:  # a NUL or a lone surrogate: no symlink can hold that target
            self.result.errors.append(f"{shown_path(rel)}: cannot create (invalid target)")
            return
        if self.is_root:
            with contextlib.suppress(OSError):
                os.chown(name, node.uid, node.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent, follow_symlinks=False)
        self.result.symlinks += 1

    def _dir_metadata(self, rel: str, node: Node) -> None:
        fd = self.fds.get(rel)
        if self.is_root:
            with contextlib.suppress(OSError):
                os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, node.mode)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
