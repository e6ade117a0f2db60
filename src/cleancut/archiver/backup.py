"""Backup: walk a source directory and commit one snapshot of it.

The walk is depth first and never leaves the source: each directory is opened
relative to its parent's descriptor with O_NOFOLLOW, listed through that
descriptor, and each file is opened relative to it with O_NOFOLLOW|O_NONBLOCK
and kept only if the opened descriptor is a regular file. An entry swapped for
a symlink, a FIFO or a device after it was listed is skipped with a warning;
a directory renamed or replaced by path after it was opened is still read
through its descriptor. Symlinks are stored, never followed. Only the source
path itself is followed if it is a symlink (as restic does).

A source of several named directories (repository/sourcedirs.py) is walked as one
tree whose root holds one directory per name, each opened from its own path:
the snapshot is one tree, so chains, deltas, ls, diff, check and restore treat
it like any other.

Files that match the previous snapshot of the same name (size, mtime_ns,
ctime_ns, inode), and were not modified within the clock's granularity of
that snapshot's scan, reuse its content list without
being read. Everything else streams through the chunker into the blob saver;
in an incremental, a file that grew keeps the previous version's blobs that
still match it and only its tail is chunked (archiver/tail.py), and a full
chunks such a file again from the start.
A directory's tree blob is written once all its entries are resolved; the
root tree, then the snapshot record, are written only after every pack and
index segment is durable (docs/architecture.md: commit order).
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import operator
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut import clock
from cleancut.errors import CleancutError, NoSpace, WorkerDied
from cleancut.fsio.filekind import kind_of
from cleancut.fsio.racy import is_racy
from cleancut.fsio.treewalk import walk
from cleancut.repository.chain import snapshot_state, verified_chain
from cleancut.repository.chunker import chunk_fd
from cleancut.repository.pack import DATA, DELTA, TREE
from cleancut.repository.records import JOURNAL_GAP, failed_among, list_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot, stamp
from cleancut.repository.sourcedirs import Dirs, Source, default_name, dirs_record, source_paths
from cleancut.repository.state import State, diff_states, referenced_by_state
from cleancut.repository.statecache import load_state, relabel_state, save_state
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node, encode_tree

from .content import POOL_THRESHOLD, NewContent
from .excludes import is_excluded
from .policy import Decision, chain_failure, decide, latest_of
from .pool import FileJob, FileStatus
from .prefetch import MetadataPrefetcher
from .saver import BlobSaver, Job
from .tail import blob_lengths, content_defined, matching_prefix

# How much of each file to ask the kernel to read ahead while earlier files are processed.
READAHEAD_BYTES = 32 << 20


@dataclass
class BackupOptions:
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    consistency: str = "unquiesced"
    force_full: bool = False
    max_full_age: float = 24 * 3600  # the profile's; the 72 h chain cap applies regardless
    # A hot backup reads a staged copy: the snapshot names the source it stands for.
    source_path: str | None = None
    # How the snapshot was captured (steps, pause, actions in flight); stored in the record.
    capture: dict[str, Any] = field(default_factory=dict)
    # What the capture's format checks found (validation/capture.py), stored in the record,
    # and the warnings they raised, reported (and recorded) with the snapshot's own.
    validation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Progress:
    """Counters read by a progress display on another thread."""

    files_done: int = 0
    bytes_done: int = 0
    bytes_added: int = 0
    files_total: int = 0
    bytes_total: int = 0
    scan_finished: bool = False
    current: str = ""


@dataclass
class BackupResult:
    snapshot: Snapshot
    files: int
    dirs: int
    bytes_read: int
    bytes_total: int
    bytes_added: int
    files_new: int
    files_changed: int
    files_unchanged: int
    duration_s: float
    warnings: list[str]
    notes: list[str]

    def summary(self) -> dict[str, object]:
        return {
            "snapshot_id": self.snapshot.id,
            "name": self.snapshot.name,
            "kind": self.snapshot.kind,
            "chain": self.snapshot.chain,
            "seq": self.snapshot.seq,
            "reason": self.snapshot.reason,
            "files": self.files,
            "dirs": self.dirs,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "bytes_added": self.bytes_added,
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "duration_s": round(self.duration_s, 3),
            "warnings": self.warnings,
            "notes": self.notes,
        }


class _OpenDir:
    """A directory being walked: its entries, and the jobs its files wait on."""

    __slots__ = ("rel", "node", "nodes", "jobs", "pooled", "prev", "parent", "fd")

    def __init__(
        self, rel: str, node: Node, prev: dict[str, Node], parent: _OpenDir | None, fd: int
    ) -> None:
        self.fd = fd  # open while the directory is walked; entries are opened relative to it
        self.rel = rel
        self.node = node
        self.nodes: list[Node] = []
        # A file's node, the blob IDs it keeps from its previous version, its new blobs.
        self.jobs: list[tuple[Node, list[str], list[Job]]] = []
        # Files handed to worker processes (archiver/pool.py), completed when done.
        self.pooled: list[_Pooled] = []
        self.prev = prev
        self.parent = parent


@dataclass(eq=False)
class _Pooled:
    """A file handed to the worker pool, and what completing its node needs."""

    node: Node
    rel: str
    opened: os.stat_result
    kept: list[str]  # blob IDs kept from the previous version
    prefix: int  # bytes those cover: the worker read from here
    job: FileJob
    prev: Node | None


class Archiver:
    def __init__(
        self,
        repo: Repository,
        source: Source,
        options: BackupOptions,
        progress: Progress | None = None,
    ):
        self.repo = repo
        self.source = source
        self.options = options
        self.progress = progress or Progress()
        self.warnings: list[str] = list(options.warnings)
        self.notes: list[str] = []
        self.files = self.dirs = 0
        self.bytes_read = self.bytes_total = 0
        self.files_new = self.files_changed = self.files_unchanged = 0
        self.parent_snapshot: Snapshot | None = None
        self.ready: deque[_OpenDir] = deque()
        self.root_tree: str | None = None
        self.decision: Decision | None = None
        self.prev_children: dict[str, dict[str, Node]] = {}
        self.state: State = {}  # what this snapshot holds, path by path
        self.parent_cached = False  # the parent's state came from the local state cache
        self.nothing_changed = False  # an incremental whose delta is empty
        self.trees: list[bytes] = []  # tree blobs a full references
        self.prefetcher = MetadataPrefetcher(lambda rel: is_excluded(rel, self.options.excludes))
        # Called with an entry's relative path just before it is opened, after its
        # directory was listed: tests swap entries there to prove the walk stays put.
        self.before_open: Callable[[str], None] | None = None
        # Bytes read in this process before files go to worker processes (archiver/content.py),
        # and how many workers (None: one per core).
        self.pool_threshold = POOL_THRESHOLD
        self.pool_workers: int | None = None

    def _prefetch_parent_trees(self) -> None:
        """Start reading the packs that hold trees; comparing with the parent needs them all."""
        if self.parent_snapshot is not None:
            for pack_id in self.repo.tree_packs()[:64]:
                self.repo.prefetch_pack(pack_id)

    # --- previous snapshot ----------------------------------------------

    def _plan(self, name: str) -> None:
        """Decide full or incremental, and load the state files are compared with."""
        # The catalog first: the blob index then loads on a side thread (it holds the
        # cache's connection while it reads) beside the records' reads and the state's.
        snapshots = self.repo.snapshots()
        _start_loading_index(self.repo)
        records = list_records(self.repo)  # read once: restore tests and journal gaps
        failed = failed_among(records)
        decision = decide(
            snapshots,
            name,
            clock.now(),
            self.options.max_full_age,
            failed,
            self.options.force_full,
            [r for r in records if r.get("type") == JOURNAL_GAP],
        )
        latest = latest_of(snapshots, name)
        prev_state: State = {}
        if latest is not None and chain_failure(snapshots, latest, failed) is None:
            self.parent_snapshot = latest
            try:
                prev_state = self._parent_state(latest)
            except CleancutError as exc:
                # Never build on a chain that does not verify: start a new one.
                self.warnings.append(f"previous snapshot unusable ({exc}); taking a full")
                self.parent_snapshot = None
                prev_state = {}
                if decision.kind == "incremental":
                    decision = Decision(
                        "full",
                        f"parent failed verification: {exc}",
                        None,
                        os.urandom(16).hex(),
                        0,
                    )
        self.decision = decision
        self.prev_state = prev_state
        for path, node in prev_state.items():
            parent, _, base = path.rpartition("/")
            self.prev_children.setdefault(parent, {})[base] = node

    def _parent_state(self, latest: Snapshot) -> State:
        """The parent's state: the local copy the previous backup left, once the chain's
        links verify, else the chain replayed from the repository."""
        snapshot = self.repo.load_snapshot(latest.id)
        cached = load_state(self.repo.local_dir, snapshot.name, snapshot.id)
        if cached is None:
            self._prefetch_parent_trees()
            return snapshot_state(self.repo, snapshot)
        verified_chain(self.repo, snapshot, prefetch=False)  # the links only, no delta read
        self.parent_cached = True
        return cached

    def _unchanged(self, prev: Node | None, st: os.stat_result) -> bool:
        if prev is None or prev.type != FILE or self.parent_snapshot is None:
            return False
        if (prev.size, prev.mtime_ns, prev.ctime_ns, prev.inode) != (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
        ):
            return False
        if is_racy(prev.mtime_ns, self.parent_snapshot.scan_start_ns):
            return False
        if not all(self.repo.has_blob(bytes.fromhex(b)) for b in prev.content):
            return False
        if self.decision is not None and self.decision.kind == "full":
            # A full restores content-defined boundaries where appends left tail blobs.
            lengths = blob_lengths(prev.content, self._raw_length)
            return lengths is not None and content_defined(lengths, self.repo.config.chunker)
        return True

    def _raw_length(self, blob_id: bytes) -> int | None:
        """A blob's plaintext length, or None unless an intact copy is indexed (a blob
        known only in damaged places is never kept: the file's bytes store it afresh)."""
        if not self.repo.has_blob(blob_id):
            return None
        loc = self.repo.find_blob(blob_id)
        return None if loc is None else loc.entry.raw_length

    def _kept_prefix(self, fd: int, prev: Node | None, size: int) -> tuple[list[str], int]:
        """In an incremental, the previous version's leading blobs the file still holds
        (checked by hash) and the offset to chunk from; else nothing kept. A file that
        grew keeps them all; a file read again with its old content (a racy mtime) keeps
        its tail blobs instead of being chunked into new boundaries."""
        if (
            prev is None
            or prev.type != FILE
            or self.decision is None
            or self.decision.kind != "incremental"
            or not prev.size
            or not size
        ):
            return [], 0
        lengths = blob_lengths(prev.content, self._raw_length)
        if lengths is None or sum(lengths) != prev.size:
            return [], 0
        prefix = matching_prefix(fd, prev.content, lengths, self.repo.keys.blob_id, size)
        return prefix.ids, prefix.length

    # --- the walk -------------------------------------------------------

    def run(self) -> BackupResult:
        started = time.monotonic()
        # Real time for the racy-file rule (it compares with filesystem timestamps); the
        # injectable clock for the snapshot's time, which policy and retention read.
        scan_start_ns = time.time_ns()
        reading = clock.now()
        source = self.source
        opened = _open_dirs(source) if isinstance(source, tuple) else []
        root_fd = _open_source(source) if isinstance(source, Path) else -1
        try:
            st = os.fstat(root_fd) if root_fd >= 0 else None
            name = self.options.name or default_name(source)
            if root_fd >= 0:  # several directories: no one descriptor to warm below
                self.prefetcher.start(root_fd)
            self._plan(name)
        except BaseException:
            for fd in [root_fd, *(fd for _, fd in opened)]:
                if fd >= 0:
                    os.close(fd)
            raise
        assert self.decision is not None
        taken = stamp(self.repo.snapshots(), name, reading)
        if taken.went_back:
            self.warnings.append(taken.warning())
        saver = BlobSaver(self.repo, on_pack_stored=self._on_stored)
        self.content = content = NewContent(
            self.repo, saver, self.pool_threshold, self.pool_workers
        )
        delta_id: str | None = None
        try:
            if st is not None:
                top = _OpenDir("", _dir_node("", st), self.prev_children.get("", {}), None, root_fd)
                self._walk(saver, top)
            else:
                self._walk_dirs(saver, opened)
            while self.ready:
                self._finalize_ready(saver, force=True)
            content.close()  # every worker exited cleanly, or WorkerDied
            if self.decision.kind == "incremental":
                delta = diff_states(self.prev_state, self.state)
                self.nothing_changed = not (delta.changed or delta.deleted)
                raw = delta.encode()
                blob_id = self.repo.keys.blob_id(raw)
                saver.submit(DELTA, raw, blob_id)
                delta_id = blob_id.hex()
            saver.finish()
        except WorkerDied:
            content.abort()
            # No snapshot; what the workers stored is indexed so the next run reuses it.
            with contextlib.suppress(CleancutError, OSError):
                saver.finish()
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"no space left on device: {exc.filename or ''}".strip()) from exc
            raise
        finally:
            content.abort()
            saver.close()
            self.prefetcher.stop()
        self._verify_references(delta_id)
        decision = self.decision
        parent = decision.parent
        snapshot = Snapshot(
            time=taken.time,
            name=name,
            host=socket.gethostname(),
            user=getpass.getuser(),
            paths=[self.options.source_path] if self.options.source_path else source_paths(source),
            tree=self.root_tree or "",
            tags=sorted(set(self.options.tags)),
            excludes=list(self.options.excludes),
            kind=decision.kind,
            parent=parent.id if parent else None,
            chain=decision.chain,
            seq=decision.seq,
            parent_hash=parent.record_hash if parent else None,
            consistency=self.options.consistency,
            scan_start_ns=scan_start_ns,
            reason=decision.reason,
            delta=delta_id,
            capture=dict(self.options.capture),
            validation=self.options.validation,
            clock_went_back=taken.went_back,
            clock_reading=taken.reading if taken.went_back else None,
            dirs=dirs_record(source),
        )
        duration = time.monotonic() - started
        snapshot.summary = {
            "files": self.files,
            "dirs": self.dirs,
            "bytes_total": self.bytes_total,
            "bytes_read": self.bytes_read,
            "bytes_added": saver.bytes_added,
            "duration_s": round(duration, 3),
            "warnings": len(self.warnings),
        }
        self.repo.write_snapshot(snapshot)
        self._save_state(snapshot)
        return BackupResult(
            snapshot=snapshot,
            files=self.files,
            dirs=self.dirs,
            bytes_read=self.bytes_read,
            bytes_total=self.bytes_total,
            bytes_added=saver.bytes_added,
            files_new=self.files_new,
            files_changed=self.files_changed,
            files_unchanged=self.files_unchanged,
            duration_s=duration,
            warnings=self.warnings,
            notes=self.notes,
        )

    def _save_state(self, snapshot: Snapshot) -> None:
        """Leave this snapshot's state for the next backup: the parent's copy relabelled
        when nothing changed (the same state, not encoded again), else written anew."""
        parent = self.parent_snapshot
        if (
            self.nothing_changed
            and self.parent_cached
            and parent is not None
            and relabel_state(self.repo.local_dir, snapshot.name, parent.id, snapshot.id)
        ):
            return
        save_state(self.repo.local_dir, snapshot.name, snapshot.id, self.state)

    def _verify_references(self, delta_id: str | None) -> None:
        """Commit only if every blob the snapshot references is still indexed.

        A prune running beside this backup may have taken a pack it deduplicated
        against out of the index; committing then would leave a snapshot that does
        not restore until the next prune re-indexes the pack. Refusing is cheap: the
        data is stored, and the next backup deduplicates against it again.
        """
        self.repo.sync_cache()  # what concurrent backups and prunes changed meanwhile
        self.repo.reread_index()  # and what another process sharing the cache wrote to it
        wanted = set(self.trees) | referenced_by_state(self.state)
        if delta_id:
            wanted.add(bytes.fromhex(delta_id))
        missing = [b for b in wanted if not self.repo.has_blob(b)]
        if missing:
            raise CleancutError(
                f"{len(missing)} blob(s) this snapshot needs left the index while it ran "
                "(a concurrent prune); nothing was committed: run the backup again"
            )

    def _on_stored(self, nbytes: int) -> None:
        self.progress.bytes_added += nbytes

    def _walk(self, saver: BlobSaver, top: _OpenDir) -> None:
        # Iterative depth-first walk: directories are finished in post-order. Each
        # directory on the stack holds its descriptor; all are closed on the way out.
        stack: list[tuple[_OpenDir, list[os.DirEntry[str]]]] = []
        try:
            stack.append((top, self._listed(top)))
            self._walk_stack(saver, stack)
        finally:
            for d, _ in stack:
                os.close(d.fd)

    def _walk_dirs(self, saver: BlobSaver, opened: list[tuple[str, int]]) -> None:
        """Several named directories as one tree: a root that holds one directory per
        name, each walked through the descriptor opened from its own path. The root
        itself stands for no directory on disk (its node is never restored)."""
        root_node = Node(name="", type=DIR, mode=0o700, mtime_ns=0)
        root = _OpenDir("", root_node, self.prev_children.get("", {}), None, os.dup(opened[0][1]))
        stack: list[tuple[_OpenDir, list[os.DirEntry[str]]]] = [(root, [])]
        pending = list(opened)
        try:
            while pending:
                name, fd = pending[0]
                node = _dir_node(name, os.fstat(fd))
                pending.pop(0)
                child = _OpenDir(name, node, self.prev_children.get(name, {}), root, fd)
                root.nodes.append(child.node)
                self.dirs += 1
                stack.append((child, self._listed(child)))
            self._walk_stack(saver, stack)
        finally:
            for _, fd in pending:
                os.close(fd)
            for d, _ in stack:
                os.close(d.fd)

    def _walk_stack(
        self, saver: BlobSaver, stack: list[tuple[_OpenDir, list[os.DirEntry[str]]]]
    ) -> None:
        self.dirs += 1
        excludes = self.options.excludes
        while stack:
            current, entries = stack[-1]
            if not entries:
                stack.pop()
                os.close(current.fd)
                self.ready.append(current)
                self._finalize_ready(saver, force=False)
                continue
            entry = entries.pop()
            rel = f"{current.rel}/{entry.name}" if current.rel else entry.name
            if excludes and is_excluded(rel, excludes):
                continue
            # A directory by the listing's type (d_type) needs no lstat: its open refuses
            # anything that is no longer a directory, and its fstat is the node's metadata.
            st = None
            if not entry.is_dir(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)  # a file's was taken by _listed
                except OSError as exc:
                    self._warn(f"{rel}: cannot stat ({exc.strerror}), skipped")
                    continue
            if st is None or stat.S_ISDIR(st.st_mode):
                child = self._open_dir(current, entry.name, rel)
                if child is None:
                    continue
                current.nodes.append(child.node)
                self.dirs += 1
                stack.append((child, self._listed(child)))
            elif stat.S_ISREG(st.st_mode):
                self._file(saver, current, entry.name, rel, st, current.prev.get(entry.name))
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(entry.name, dir_fd=current.fd)
                except OSError as exc:
                    self._warn(f"{rel}: cannot read symlink ({exc.strerror}), skipped")
                    continue
                current.nodes.append(_node(entry.name, SYMLINK, st, target=target))
            else:
                self.notes.append(f"{rel}: special file (socket, fifo or device) not backed up")

    def _open_dir(self, parent: _OpenDir, name: str, rel: str) -> _OpenDir | None:
        """Open a listed subdirectory through its parent's descriptor, never through a link."""
        if self.before_open is not None:
            self.before_open(rel)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
        except OSError as exc:
            self._warn_swapped_or_unreadable(parent, name, rel, exc, "cannot list directory")
            return None
        try:
            node = _dir_node(name, os.fstat(fd))
        except OSError as exc:
            os.close(fd)
            self._warn(f"{rel}: cannot stat ({exc.strerror}), skipped")
            return None
        return _OpenDir(rel, node, self.prev_children.get(rel, {}), parent, fd)

    def _warn_swapped_or_unreadable(
        self, parent: _OpenDir, name: str, rel: str, exc: OSError, what: str
    ) -> None:
        """One warning: the entry became something else since the listing, or it failed."""
        try:
            now = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except OSError:
            now = None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO) and now is not None:
            self._warn(f"{rel}: became {kind_of(now.st_mode)} after it was listed, skipped")
        else:
            self._warn(f"{rel}: {what} ({exc.strerror}), skipped")

    def _listed(self, d: _OpenDir) -> list[os.DirEntry[str]]:
        """A directory's entries still to walk. Each file is judged here, once, from the
        listing's lstat: an unchanged one gets its node now and leaves the list (the
        walk has nothing more to do for it); those that will be read are handed to the
        readahead thread."""
        entries = self._list(d)
        wanted = []
        prev = d.prev
        excludes = self.options.excludes
        rest: list[os.DirEntry[str]] = []
        files = size = 0
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    rest.append(entry)
                    continue
                st = entry.stat(follow_symlinks=False)  # cached on the entry for the walk
            except OSError:
                rest.append(entry)  # the walk warns
                continue
            name = entry.name
            before = prev.get(name)
            if before is not None and self._unchanged(before, st):
                if excludes and is_excluded(f"{d.rel}/{name}" if d.rel else name, excludes):
                    continue
                d.nodes.append(_same_file(before, st))
                files += 1
                size += st.st_size
                continue
            rest.append(entry)
            if st.st_size:
                wanted.append((name, min(st.st_size, READAHEAD_BYTES)))
        self.files += files
        self.files_unchanged += files
        self.bytes_total += size
        self.progress.files_done += files
        self.progress.bytes_done += size
        if wanted and self.content.pool is None:  # workers read ahead of their own files
            self.prefetcher.readahead(d.rel, wanted)
        return rest

    def _list(self, d: _OpenDir) -> list[os.DirEntry[str]]:
        try:
            # Listed through the descriptor: the entries' stat() is relative to it too.
            with os.scandir(d.fd) as it:
                # Reverse order: entries.pop() then yields names in sorted order.
                return sorted(it, key=_entry_name, reverse=True)
        except OSError as exc:
            self._warn(f"{d.rel or '.'}: cannot list directory ({exc.strerror}), contents skipped")
            return []

    def _file(
        self,
        saver: BlobSaver,
        current: _OpenDir,
        name: str,
        rel: str,
        st: os.stat_result,
        prev: Node | None,
    ) -> None:
        self.progress.current = rel
        jobs: list[Job] = []
        if self.before_open is not None:
            self.before_open(rel)
        try:
            fd = _open_noatime(name, current.fd)
        except OSError as exc:
            self._warn_swapped_or_unreadable(current, name, rel, exc, "cannot read")
            return
        read = 0
        pooled = False
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                # A FIFO or a device put in its place after the listing: never read it.
                self._warn(f"{rel}: became {kind_of(opened.st_mode)} after it was listed, skipped")
                return
            os.set_blocking(fd, True)
            kept, read = self._kept_prefix(fd, prev, opened.st_size)
            self.progress.bytes_done += read
            if self.content.use_pool(opened.st_size - read):
                pooled = True  # the pool owns the descriptor from here on
                job = self.content.submit(fd, read, opened.st_size - read, self._known(prev))
                node = _node(name, FILE, opened, size=read)
                current.nodes.append(node)
                current.pooled.append(_Pooled(node, rel, opened, kept, read, job, prev))
                return
            os.lseek(fd, read, os.SEEK_SET)
            for chunk in chunk_fd(fd, self.repo.config.chunker, opened.st_size - read):
                jobs.append(saver.submit(DATA, chunk))
                read += len(chunk)
                self.progress.bytes_done += len(chunk)
            after = os.fstat(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._warn(f"{rel}: read failed ({exc.strerror}), skipped")
            return
        finally:
            if not pooled:
                os.close(fd)
        self._note_change(rel, opened, after, read)
        node = _node(name, FILE, opened, size=read)
        current.nodes.append(node)
        current.jobs.append((node, kept, jobs))
        self._count_file(read, prev)

    def _count_file(self, read: int, prev: Node | None) -> None:
        self.files += 1
        self.bytes_read += read
        self.bytes_total += read
        self.progress.files_done += 1
        if prev is None or prev.type != FILE:
            self.files_new += 1
        else:
            self.files_changed += 1

    def _known(self, prev: Node | None) -> list[bytes]:
        """The previous version's blobs the index holds: a worker sends their IDs back
        without compressing them again (a file rewritten in place keeps most of them)."""
        if prev is None or prev.type != FILE:
            return []
        ids = (bytes.fromhex(b) for b in prev.content)
        return [b for b in ids if self.repo.has_blob(b)]

    def _pooled_done(self, d: _OpenDir, p: _Pooled) -> None:
        """A file a worker read: its blob list, size and change check, as `_file` does."""
        self.content.wait(p.job)
        job = p.job
        if job.error is not None or job.after is None:
            d.nodes[:] = [n for n in d.nodes if n is not p.node]
            why = job.error.strerror if job.error is not None else "no status"
            self._warn(f"{p.rel}: read failed ({why}), skipped")
            return
        read = p.prefix + job.read
        p.node.content = p.kept + [b.hex() for b in job.ids]
        p.node.size = read
        self.progress.bytes_done += job.read
        self._note_change(p.rel, p.opened, job.after, read)
        self._count_file(read, p.prev)

    def _note_change(
        self, rel: str, before: os.stat_result, after: os.stat_result | FileStatus, read: int
    ) -> None:
        if (before.st_mtime_ns, before.st_size) == (
            after.st_mtime_ns,
            after.st_size,
        ) and read == before.st_size:
            return
        # Grown and read past the old end: what an append-only writer does. A rewrite in
        # place that also grew is indistinguishable without reading twice.
        if after.st_size > before.st_size and read >= before.st_size:
            self.notes.append(f"{rel}: grew while read (appended); captured {read} bytes")
        else:
            self._warn(
                f"{rel}: changed while read; the snapshot may hold a mix of old and new content"
            )

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    # --- trees ----------------------------------------------------------

    def _finalize_ready(self, saver: BlobSaver, force: bool) -> None:
        """Write tree blobs of finished directories whose file jobs are all resolved."""
        while self.ready:
            d = self.ready[0]
            if d.jobs:
                last_jobs = next((jobs for _, _, jobs in reversed(d.jobs) if jobs), None)
                if last_jobs is not None and last_jobs[-1].id is None:
                    if not force:
                        return
                    saver.resolve(last_jobs[-1])
            if d.pooled and not force and not all(p.job.done for p in d.pooled):
                return
            self.ready.popleft()
            for p in d.pooled:
                self._pooled_done(d, p)
            for node, kept, jobs in d.jobs:
                node.content = kept + [saver.resolve(j).hex() for j in jobs]
            for node in d.nodes:
                self.state[f"{d.rel}/{node.name}" if d.rel else node.name] = node
            if self.decision is not None and self.decision.kind == "incremental":
                continue  # an incremental stores a delta, not trees
            data = encode_tree(d.nodes)
            tree_id = self.repo.keys.blob_id(data)
            if not self.repo.has_blob(tree_id):  # unchanged directories are already stored
                saver.submit(TREE, data, tree_id)
            d.node.subtree = tree_id.hex()
            self.trees.append(tree_id)
            if d.parent is None:
                self.root_tree = d.node.subtree


_entry_name = operator.attrgetter("name")


def _start_loading_index(repo: Repository) -> None:
    """Read the cached blob index into memory on a side thread while the plan is made
    (SQLite reads release the GIL): from a cold page cache the first file compared
    with its parent no longer waits for it. A failure here is left to that first
    lookup, which loads again and reports it."""

    def load() -> None:
        with contextlib.suppress(Exception):
            repo.load_index()

    threading.Thread(target=load, name="index-load", daemon=True).start()


# A directory of the source: never through a symlink, never blocking.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A file of the source: a FIFO opened with O_NONBLOCK returns at once (then fstat refuses it).
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_source(source: Path) -> int:
    """The source directory's descriptor; the given path is followed if it is a symlink."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(source, flags)
    except NotADirectoryError:
        raise CleancutError(f"source {source} is not a directory") from None
    except OSError as exc:
        raise CleancutError(f"cannot read source {source}: {exc.strerror}") from exc


def _open_dirs(dirs: Dirs) -> list[tuple[str, int]]:
    """Each named directory's descriptor, in the source's (name) order; all or none."""
    opened: list[tuple[str, int]] = []
    try:
        for item in dirs:
            try:
                opened.append((item.name, _open_source(item.path)))
            except CleancutError as exc:
                raise CleancutError(f"directory {item.name}: {exc}") from None
    except BaseException:
        for _, fd in opened:
            os.close(fd)
        raise
    return opened


def _open_noatime(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, FILE_FLAGS | getattr(os, "O_NOATIME", 0), dir_fd=dir_fd)
    except PermissionError:
        return os.open(name, FILE_FLAGS, dir_fd=dir_fd)  # O_NOATIME needs ownership


def _node(name: str, kind: str, st: os.stat_result, **extra: object) -> Node:
    node = Node(
        name=name,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
    )
    if kind == FILE:
        node.size = st.st_size
        node.ctime_ns = st.st_ctime_ns
        node.inode = st.st_ino
    for key, value in extra.items():
        setattr(node, key, value)
    return node


def _same_file(prev: Node, st: os.stat_result) -> Node:
    """An unchanged file's node: the previous one itself when its metadata is equal too
    (the common case: no new object, and diff_states skips it by identity)."""
    if (prev.mode, prev.uid, prev.gid) == (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid):
        return prev
    return _node(prev.name, FILE, st, content=list(prev.content))


def _dir_node(name: str, st: os.stat_result) -> Node:
    return _node(name, DIR, st)


def estimate(source: Source, excludes: list[str], progress: Progress) -> None:
    """Count files and bytes for the progress ETA (run on a side thread; stat only).

    Like the walk, it goes through directory descriptors and never follows a link
    below the source (the source itself is resolved once, as the walk opens it)."""
    tops = [(d.name, d.path) for d in source] if isinstance(source, tuple) else [("", source)]
    for prefix, path in tops:
        _estimate_dir(prefix, path, excludes, progress)
    progress.scan_finished = True


def _estimate_dir(prefix: str, source: Path, excludes: list[str], progress: Progress) -> None:
    top = os.path.realpath(source)
    for level in walk(top):
        rel_dir = f"{prefix}/{level.rel}".strip("/") if prefix else level.rel
        level.dirs[:] = [
            d for d in level.dirs if not is_excluded(f"{rel_dir}/{d}".lstrip("/"), excludes)
        ]
        dir_fd = level.fd
        for filename in level.files:
            rel = f"{rel_dir}/{filename}".lstrip("/")
            if is_excluded(rel, excludes):
                continue
            try:
                st = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                progress.files_total += 1
                progress.bytes_total += st.st_size
