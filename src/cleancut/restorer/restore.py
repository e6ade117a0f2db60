"""Restore: write a snapshot's tree into a target directory, and nowhere else.

Every path is built from directory file descriptors opened with O_NOFOLLOW,
one validated name at a time, so no entry ("../x", "/etc/passwd", a name with
a slash, a symlink followed by a path under it) can make a write land outside
the target. Directories are created first, depth by depth over a few threads
(levels.py). File data is restored pack by pack (plan.py): each needed range
of a pack is read once, by a few threads at once, through the one pack reader
(repository/packread.py), each blob in it decrypted and verified against its
ID once and written to every file that holds it (files.py). Each file is
written under a short random temporary name created exclusively (safeio.py: nothing planted there is
opened, followed or waited on, and no name, however long, can collide with
it), and only a complete, verified file is renamed into place: a damaged blob
leaves no corrupted file behind. Blocks of zeros are skipped over rather than
written, so sparse files come back sparse on filesystems with holes.

A snapshot of several named directories (decision 0006) restores as one
directory per name under the target; `only_dir` restores one of them, its
contents straight into the target (the way each goes back to its own place).
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.errors import NotInSnapshot, PathNotFound
from cleancut.pathtext import shown_path
from cleancut.repository.chain import snapshot_state
from cleancut.repository.packread import PackReader
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.sourcedirs import recorded_dirs
from cleancut.repository.state import State
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node

from .files import DirFds, FileWriter, data_segments
from .levels import by_level
from .plan import FileJob, Plan, Run, make_plan


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cycle collector off while a restore runs: the state holds a node object per
    entry (tens of thousands), which every full collection walked again, for nothing:
    restore makes no cycles to collect. Back on afterwards if it was on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass
class RestoreResult:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes_written: int = 0
    refused: list[str] = field(default_factory=list)  # unsafe entries, not written
    damaged: list[str] = field(default_factory=list)  # files whose data failed verification
    errors: list[str] = field(default_factory=list)  # other per-entry failures


def _included(rel: str, includes: list[str]) -> bool:
    if not includes:
        return True
    return any(
        rel == inc or rel.startswith(inc + "/") or inc.startswith(rel + "/") for inc in includes
    )


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
        with _no_cycle_collection():
            return self._run()

    def _run(self) -> RestoreResult:
        # An incremental's state is its chain replayed from the full, every link verified
        # first; names that cannot be paths are refused, not written.
        # Trees live in packs of their own: ask for them first, so an object store serves
        # whole packs instead of one ranged GET per directory.
        PackReader(self.repo).prefetch_trees()
        state = snapshot_state(self.repo, self.snapshot, self.result.refused)
        self.repo.drop_tree_cache()  # the state holds every node now: room for file data
        if self.only_dir is not None:
            state = self._one_dir(state, self.only_dir)
        for inc in self.includes:
            if inc not in state:
                raise NotInSnapshot(f"no {inc!r} in snapshot {self.snapshot.id[:12]}")
        self.target.mkdir(parents=True, exist_ok=True)
        root_fd = self.root_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY)
        self.fds = DirFds(root_fd)
        files: list[FileJob] = []
        links: list[tuple[str, str, Node]] = []
        dirs: list[tuple[str, Node]] = []
        try:
            if self.top is not None:  # its mode and times go on the target, set last
                dirs.append(("", self.top))
            self._plan(state, files, links, dirs)
            self._write_files(files)
            for dir_rel, rel, node in links:
                self._symlink(dir_rel, rel, node)
            # After every entry is in place (an entry made changes its directory's mtime);
            # deepest first, so no directory is made unsearchable above one still to do.
            nodes = dict(dirs)
            by_level(root_fd, list(nodes), lambda fds, rel: self._dir_metadata(fds, rel,
                     nodes[rel]), deepest_first=True)  # fmt: skip
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

    # --- planning: directories are created depth by depth ------------------

    def _plan(
        self,
        state: State,
        files: list[FileJob],
        links: list[tuple[str, str, Node]],
        dirs: list[tuple[str, Node]],
    ) -> None:
        """Create the directories (levels.py), then list the files and symlinks that go in
        them; an entry under a directory refused or left out is left out."""
        for rel in state:
            dir_rel, _, name = rel.rpartition("/")
            self.names.setdefault(dir_rel, set()).add(name)
        entries = [rel for rel in sorted(state, key=lambda p: p.split("/"))
                   if _included(rel, self.includes)]  # fmt: skip
        made = {""}  # directories that exist in the target and may hold entries
        made_lock = threading.Lock()

        def mkdir(fds: DirFds, rel: str) -> None:
            if rel.rpartition("/")[0] in made and self._mkdir(fds, rel):
                with made_lock:
                    made.add(rel)

        by_level(self.root_fd, [rel for rel in entries if state[rel].type == DIR], mkdir)
        for rel in entries:
            node = state[rel]
            dir_rel = rel.rpartition("/")[0]
            if dir_rel not in made:
                continue  # its directory was refused or left out
            if node.type == DIR:
                if rel in made:
                    dirs.append((rel, node))
                    self.result.dirs += 1
            elif node.type == FILE:
                files.append(FileJob(dir_rel, rel, node))
            elif node.type == SYMLINK:
                links.append((dir_rel, rel, node))

    def _mkdir(self, fds: DirFds, rel: str) -> bool:
        dir_rel, _, name = rel.rpartition("/")  # created by the path, never the node
        parent = fds.get(dir_rel)
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                with self.lock:
                    self.result.refused.append(
                        f"{rel!r}: something that is not a directory (a symlink?) is in the way"
                    )
                return False
        return True

    # --- files: read pack by pack, write blob by blob ------------------------

    def _write_files(self, files: list[FileJob]) -> None:
        """Read every needed range of every pack once (a few requests in flight at once),
        decrypt and verify each blob once, and write it to every file that holds it."""
        plan = make_plan(self.repo.cache, files)
        for job, why in plan.unplanned:
            self.result.damaged.append(f"{shown_path(job.rel)}: {why}")
        writer = FileWriter(self.names, self.is_root, self._finished, self._failed)
        main_fds = DirFds(self.root_fd, limit=64)
        try:
            for job in plan.empty:
                writer.empty(job, main_fds)
            self._run_workers(plan, writer)
        except BaseException:
            for job in files:  # nothing half-written stays behind, whatever stopped us
                writer.abandon(job, main_fds)
            raise
        finally:
            main_fds.close()

    def _run_workers(self, plan: Plan, writer: FileWriter) -> None:
        runs = iter(plan.runs)
        take = threading.Lock()
        stop = threading.Event()
        reader = PackReader(self.repo, plan.packs)

        def work() -> None:
            fds = DirFds(self.root_fd, limit=64)
            try:
                while not stop.is_set():
                    with take:
                        run = next(runs, None)
                    if run is None:
                        return
                    self._restore_run(reader, run, writer, fds)
            except BaseException:
                stop.set()
                raise
            finally:
                fds.close()

        workers = reader.readers
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(work) for _ in range(min(workers, len(plan.runs)))]
        except BaseException:  # interrupted while waiting: the workers stop after their run
            stop.set()
            raise
        for future in futures:
            future.result()  # the first failure (a full disk) stops the restore

    def _restore_run(
        self, reader: PackReader, run: Run, writer: FileWriter, fds: DirFds
    ) -> None:
        """One request for a range of a pack; each blob in it verified and written to every
        place that holds it, or each of those files failed."""
        for entry, data in reader.read(run.range):
            planned = run.blobs[entry.id]
            if isinstance(data, str):
                for job, offsets in planned.targets:
                    writer.fail(job, data, len(offsets), fds)
                continue
            segments = data_segments(data)
            for job, offsets in planned.targets:
                writer.write(job, data, segments, offsets, fds)
                if self.on_bytes:
                    self.on_bytes(len(data) * len(offsets))

    def _finished(self, job: FileJob) -> None:
        with self.lock:
            self.result.files += 1
            self.result.bytes_written += job.node.size

    def _failed(self, job: FileJob) -> None:
        line = f"{shown_path(job.rel)}: {job.failure}"
        with self.lock:
            (self.result.damaged if job.damaged else self.result.errors).append(line)

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

    def _dir_metadata(self, fds: DirFds, rel: str, node: Node) -> None:
        fd = fds.get(rel)
        if self.is_root:
            with contextlib.suppress(OSError):
                os.fchown(fd, node.uid, node.gid)
        os.fchmod(fd, node.mode)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
