"""Staging: a persistent mirror of an agent's workspace, brought up to date inside the pause.

A hot backup pauses the agent, and the pause has to be short. So the pause only
*captures*: it brings a staging directory that mirrors the workspace up to date,
and the slow work (chunk, compress, encrypt) reads the staged copy after the
agent runs again. The staging directory persists between backups and a
manifest remembers, for every staged file, the source's (size, mtime, ctime,
inode) when it was copied: a pass re-copies only what changed since the last
one, so the pause grows with the change, not with the workspace. Unchanged
staged files keep their own inode, size and times, which is what lets the
Archiver, reading the staged tree, skip them too.

Layout: staging/tree (the mirror), staging/manifest.json, staging/.lock, and
staging/.cleancut-staging, the marker that says the directory is ours. The mirror
deletes what the source lacks, so a directory without the marker is used only
when it is new or empty; anything else (the operator's files, say) is refused
with NotOurs rather than emptied.

The capture never leaves the source and never blocks: each directory is opened
relative to its parent's descriptor with O_NOFOLLOW and listed through it, each
file is opened relative to that descriptor with O_NOFOLLOW|O_NONBLOCK and copied
only if the descriptor is a regular file. An entry swapped for a symlink, a FIFO
or a device after its directory was listed is skipped with a warning. SQLite must
open a database by name: it is given /proc/self/fd/DIR/NAME, the name inside the
directory we opened (SQLite resolves that to the directory's current path, -wal
included), after the -wal, -shm and -journal beside it were checked to be regular
files or absent, and the copy is kept only if NAME is still the regular file we
opened (same device and inode) once SQLite is done.

What keeps the in-pause pass small (docs/decisions/0007-flat-pause.md): with
`track()`, passes after the first visit only the directories the change tracker
(changes.py) names; a file that only grew gets its new tail (stage_copy.py);
and `capture(defer=True)` pins changed WAL databases instead of copying them and
leaves their copy and the manifest to `finish()`, after resume.

After a capture inside a pause, `changed_since_capture()` re-reads the metadata
of everything the capture staged (with tracking: of the directories with an event
since the capture began): an agent that claimed to be quiesced but kept
writing shows as files whose size, times or inode moved, or names that came or
went, and the copy is then not a clean cut.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.archiver.backup import DIR_FLAGS, FILE_FLAGS
from cleancut.archiver.excludes import is_excluded
from cleancut.errors import CleancutError, NoSpace, NotOurs
from cleancut.fsio.filekind import kind_of
from cleancut.fsio.racy import is_racy
from cleancut.fsio.treewalk import remove_tree

from . import fine_ctime, sqlite_clone, sqlite_copy, stage_manifest
from .changes import Changes, ChangeTracker
from .stage_copy import Copier
from .stage_manifest import (
    _COPIED,
    _CTIME,
    _INO,
    _MTIME,
    _SIZE,
    _STAGED,
    _WAL,
    DB,
    DIR,
    FILE,
    LINK,
    Entry,
    Listing,
)

TEMP_PREFIX = ".cleancut-stage."
_NOSPACE = (errno.ENOSPC, errno.EDQUOT)
MARKER = ".cleancut-staging"
_MARKER_TEXT = b"cleancut staging: a cache that cleancut empties and rebuilds at will\n"
# What a staging directory made before the marker existed may hold (with a manifest).
_LEGACY_NAMES = {"tree", "manifest.json", "manifest.json.tmp", ".lock", "journal-tree"}
_EXCLUDE_CACHE_MAX = 1 << 20  # paths; beyond this (much churn of names) start afresh


@dataclass
class StageStats:
    """What one pass did; `warnings` names files it could not stage (they are left out)."""

    files_scanned: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_deleted: int = 0
    sqlite_copied: int = 0
    sqlite_pinned: int = 0  # WAL databases pinned in this pass, copied by finish()
    sqlite_cloned: int = 0  # rollback-journal databases reflinked (no bytes copied)
    tails: int = 0  # grown files whose new tail only was copied
    reflinked: int = 0
    duration_s: float = 0.0
    finish_s: float = 0.0  # finish(): pinned copies and the manifest, after resume
    bytes_after_resume: int = 0  # of bytes_copied, what finish() copied (pinned databases)
    scan: str = "full"  # "full" or "tracked" (only the directories that changed)
    scan_reason: str = ""  # why a full scan, or what the tracker said
    ctime_why: str = ""  # "": an unchanged ctime proves a copy current (fine_ctime.py)
    racy_vouched: int = 0  # written within a tick of their copy, unchanged says the tracker
    dirs_scanned: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "files_scanned": self.files_scanned,
            "files_copied": self.files_copied,
            "bytes_copied": self.bytes_copied,
            "files_deleted": self.files_deleted,
            "sqlite_copied": self.sqlite_copied,
            "sqlite_pinned": self.sqlite_pinned,
            "sqlite_cloned": self.sqlite_cloned,
            "tails": self.tails,
            "reflinked": self.reflinked,
            "duration_s": round(self.duration_s, 6),
            "finish_s": round(self.finish_s, 6),
            "bytes_after_resume": self.bytes_after_resume,
            "scan": self.scan,
            "scan_reason": self.scan_reason,
            "dirs_scanned": self.dirs_scanned,
            "racy_rule": self.ctime_why or "not needed: fine-grained ctimes",
            "racy_vouched": self.racy_vouched,
            "warnings": list(self.warnings),
        }

    def strategy(self) -> dict[str, object]:
        """What the capture record says about how the in-pause pass worked, and why."""
        return {
            "scan": self.scan,
            "scan_why": self.scan_reason,
            "directories_visited": self.dirs_scanned,
            "databases_pinned": self.sqlite_pinned,  # copied after resume
            "databases_copied_in_pause": self.sqlite_copied - self.sqlite_pinned,
            "databases_cloned": self.sqlite_cloned,  # reflinked, read after resume
            "tails": self.tails,
            "after_resume_s": round(self.finish_s, 6),
            "bytes_after_resume": self.bytes_after_resume,
            # Whether a file written within a tick of its last copy is copied again.
            "racy_rule": self.ctime_why or "not needed: fine-grained ctimes",
            "racy_vouched_by_tracker": self.racy_vouched,
        }


def _rmtree(path: str) -> None:
    """Remove a staged subtree, even one whose mirrored modes forbid writing, at any
    depth (treewalk's loop: a mirror is as deep as its source)."""
    remove_tree(path)


def _remove_path(path: str) -> None:
    """Remove whatever is at `path` (never following a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class Stager:
    """Keeps `staging/tree` equal to `source`; see the module docstring.

    Hold `lock()` across prepare() and capture(): the manifest is then kept in
    memory between them. A pass called without the lock held takes it itself and,
    since another process may have staged meanwhile, re-reads and re-checks the
    staging directory first (correct, but that costs a walk of the staged tree).
    """

    def __init__(
        self,
        source: Path,
        staging: Path,
        excludes: list[str] | None = None,
        *,
        sqlite_timeout: float = 5.0,
        exclude_prefix: str = "",
    ) -> None:
        self.source = Path(source)
        self.staging = Path(staging)
        self.excludes = list(excludes or [])
        # One directory of a source of several: patterns match the snapshot's paths,
        # which begin with the directory's name (repository/sourcedirs.py).
        self.exclude_prefix = exclude_prefix
        self.sqlite_timeout = sqlite_timeout
        self._src = os.path.abspath(source)
        self._staging = os.path.abspath(staging)
        self._tree = os.path.join(self._staging, "tree")
        self._manifest = os.path.join(self._staging, "manifest.json")
        src_real = os.path.realpath(self._src)
        staging_real = os.path.realpath(self._staging)
        if os.path.commonpath([src_real, staging_real]) in (src_real, staging_real):
            raise CleancutError(
                f"the staging directory {staging} and the source {source} must not contain "
                "each other: choose a staging directory outside the workspace"
            )
        self._boot = stage_manifest.boot_id()
        # Where a pass reads the source, and the wall-clock time its copies count as made:
        # the live source and now, or a frozen snapshot of it and when it was taken.
        self._read = self._src
        self._frozen_ns: int | None = None
        self._dirs: dict[str, Listing] = {}  # staged directory rel -> its entries
        self._root: Entry | None = None  # the source root's DIR entry
        self._loaded = False  # the in-memory manifest matches staging
        self._need_sweep = False  # a pass failed half way: check staging against it
        self._persisted = False  # manifest.json holds what is in memory
        self._lock_fd: int | None = None
        self._unverified: set[str] = set()  # databases staged since the last verify()
        # What verify() found, by staged path: the file's (size, mtime, ctime, inode) then
        # and integrity_check's problems; the capture check reuses it (sqlite_results()).
        self._verified: dict[str, tuple[tuple[int, int, int, int], list[str]]] = {}
        self._copier = Copier()
        self._defer = False  # this capture pins WAL databases (capture(defer=True))
        self._pending: list[_Pending] = []  # pinned, not yet copied (finish())
        # Change tracking (track()), for as long as the lock is held; never persisted.
        self._tracker: ChangeTracker | None = None
        self._tracked_base = False  # a pass succeeded since tracking began: the next may track
        self._carry = Changes()  # taken by changed_since_capture(), not yet scanned
        # Why an unchanged ctime does not prove a copy current ("" when it does: every write
        # after a stat moves it, fine_ctime.py). Probed by track(); the racy rule otherwise.
        self._ctime_why = "no change tracking"
        # Files copied while the tracker watched, with no event naming them since the take
        # before their copy: unchanged since that copy, however recent their ctime. Only
        # for passes that track (a tracker that gave up vouches for nothing it saw before).
        self._vouched: set[str] = set()
        self._vouching = False  # this pass takes the tracker's word (set by _pass)
        self._visited: set[str] = set()  # directories walked in this pass
        # Each staged directory's listing as JSON, kept until it changes: a pass that
        # copies a few files re-encodes a few directories, not the whole manifest.
        self._encoded: dict[str, str] = {}
        # is_excluded's answer per path, for the excludes in _excluded_for: matching every
        # name against every pattern on every pass would cost more than the scan itself.
        self._excluded: dict[str, bool] = {}
        self._excluded_for: list[str] = []
        # Per pass:
        self._stats = StageStats()
        self._strict = True
        self._modified: set[str] = set()  # staged directories written to in this pass
        self._current = ""  # the staged path being written, for error messages
        self._vanished: set[str] = set()  # went away (or changed kind) while being staged
        self._skipped: set[str] = set()  # could not be read or listed: left out on purpose
        # Called with an entry's relative path just before it is opened, after its
        # directory was listed: tests swap entries there to prove the capture stays put.
        self.before_open: Callable[[str], None] | None = None

    # --- public -------------------------------------------------------------

    @property
    def tree(self) -> Path:
        """The staged mirror: what the Archiver reads."""
        return Path(self._tree)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the staging directory: two stagers on one staging directory would
        overwrite each other's copies. Non-blocking: a second stager fails at once."""
        if self._lock_fd is not None:  # already ours
            yield
            return
        try:
            self._claim_staging()
            fd = os.open(
                os.path.join(self._staging, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise self._os_error(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CleancutError(
                f"another backup is staging {self.source} ({self.staging})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        try:
            yield
        finally:
            # Once we let go another process may stage: distrust the in-memory manifest.
            self._abandon_pending()
            self._stop_tracking()
            self._loaded = False
            self._lock_fd = None
            os.close(fd)

    def track(self) -> str | None:
        """Start watching the source for changes (hot/changes.py), so that a pass after
        the first one visits only the directories that changed since the pass before it.
        Needs the lock held; tracking ends with it. Returns None when every directory is
        watched, else why not (every pass then scans everything, and says why)."""
        if self._lock_fd is None:
            raise CleancutError("track() needs the staging lock held")
        if self._tracker is not None:
            return None
        self._tracker = ChangeTracker(self._src)
        self._tracked_base = False
        self._ctime_why = fine_ctime.probe(self._src, self._lock_fd) or ""
        return self._tracker.start()

    @contextlib.contextmanager
    def tracking_held(self) -> Iterator[None]:
        """Around the pause: the tracker's thread does not wake for events (they wait in
        the kernel's queue for the next take), so it does not compete with the capture."""
        tracker = self._tracker
        if tracker is not None:
            tracker.hold(True)
        try:
            yield
        finally:
            if tracker is not None:
                tracker.hold(False)

    def _stop_tracking(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
        self._tracker = None
        self._tracked_base = False
        self._carry = Changes()
        self._ctime_why = "no change tracking"
        self._vouched = set()

    def _take_changes(self) -> Changes | None:
        """What the tracker saw since the last pass (None: no tracking), with what
        changed_since_capture() took and no pass has scanned yet."""
        if self._tracker is None:
            return None
        changes = self._tracker.take()
        changes.merge(self._carry)
        self._carry = Changes()
        return changes

    @contextlib.contextmanager
    def reading_from(self, frozen: Path, taken_ns: int) -> Iterator[None]:
        """Passes read `frozen`, a read-only snapshot of the source taken at wall-clock
        `taken_ns`, instead of the source (hot/fs_snapshot.py). The manifest stays the
        source's: a snapshot keeps inode numbers and times, so what it records compares
        with the live source. Copies count as made at `taken_ns`, when their data was
        frozen, so the racy rule (fsio/racy.py) still sees a write right after it."""
        self._read, self._frozen_ns = os.path.abspath(frozen), taken_ns
        # A snapshot's inodes are not the live ones: reading them proves nothing about
        # the live files' next ctime, so the racy rule applies to what is copied now.
        why, self._ctime_why = self._ctime_why, "copies made from a filesystem snapshot"
        try:
            yield
        finally:
            self._read, self._frozen_ns = self._src, None
            self._ctime_why = why

    def prepare(self) -> StageStats:
        """Outside the pause: bring staging up to date with the live workspace.

        Files being written may be copied torn; capture() copies them again, since
        their metadata will have moved on. This pass does the bulk of the copying so
        that the one inside the pause is small. A database that cannot be copied
        now is left for capture() and named in the warnings.
        """
        return self._pass(strict=False)

    def capture(self, *, defer: bool = False) -> StageStats:
        """Inside the pause: make staging equal to the workspace at this moment.

        Scans metadata, re-copies what changed since the last pass (or may have,
        see fsio/racy.py), deletes what vanished, copies SQLite databases through
        SQLite's backup API, and persists the manifest.

        With `defer` (and the lock held by the caller), what can wait until the agent
        runs again waits for finish(): a changed WAL-mode database is pinned (a read
        transaction fixes its state now) instead of copied, and the manifest is not
        written. The staged tree is complete only once finish() returned.
        """
        defer = defer and self._lock_fd is not None
        self._defer = defer
        try:
            return self._pass(strict=True, persist=not defer)
        finally:
            self._defer = False

    def finish(self) -> StageStats:
        """After resume: copy the databases the capture pinned (their state at the cut,
        however much the agent wrote since) and write the manifest. Returns the capture's
        stats, updated. Does nothing when no deferred capture is waiting."""
        stats = self._stats
        if not self._pending and self._persisted:
            return stats
        started = time.monotonic()
        try:
            while self._pending:
                self._copy_pinned(self._pending[0])
                self._pending.pop(0)
            if not self._persisted:
                self._write_manifest()
        except OSError as exc:
            self._abandon_pending()
            raise self._os_error(exc) from exc
        except BaseException:
            self._abandon_pending()
            raise
        stats.finish_s += time.monotonic() - started
        return stats

    def verify(self) -> list[str]:
        """After resume: `PRAGMA integrity_check` on each database staged since the
        last verify(). One line per database that fails; empty when all are fine."""
        problems = []
        for rel in sorted(self._unverified):
            parent, _, name = rel.rpartition("/")
            entry = self._dirs.get(parent, {}).get(name)
            if entry is None or entry[0] != DB:
                continue  # no longer a staged database
            path = os.path.join(self._tree, rel)
            found = sqlite_copy.integrity_problems(path)
            with contextlib.suppress(OSError):
                st = os.stat(path, follow_symlinks=False)
                self._verified[path] = ((st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                         st.st_ino), found)  # fmt: skip
            if found:
                problems.append(f"{rel}: integrity_check failed: {'; '.join(found[:3])}")
        self._unverified.clear()
        return problems

    def sqlite_results(self) -> dict[str, tuple[tuple[int, int, int, int], list[str]]]:
        """What verify() found, by staged path: the metadata of the file it checked and
        integrity_check's problems. A check of the same file with the same metadata would
        find the same (the staged tree changes only under the staging lock)."""
        return dict(self._verified)

    def changed_since_capture(self) -> list[str]:
        """Inside the pause, right after capture(): what moved in the source since the
        capture read it. Each staged file's size, mtime, ctime and inode (a database's
        -wal's size, mtime and inode too), each symlink's target, and each directory's
        names are compared with what the capture recorded; files that vanished or
        changed kind during the capture count too. Empty when nothing moved.
        One metadata pass, no data read: of every staged directory, or with change
        tracking, of the directories with an event since the capture began."""
        changed = sorted(self._vanished)
        dirs: Iterable[str] = self._dirs
        if self._tracker is not None:
            since = self._tracker.take()
            # The carry holds what the capture itself took after its start (events absorbed
            # before its copies): everything since the capture began, for the next pass too.
            self._carry.merge(since)
            if self._carry.reason is None:
                dirs = self._carry.dirs | self._carry.fresh
        for rel in dirs:
            listing = self._dirs.get(rel)
            if listing is None or rel in self._skipped:
                continue
            src = os.path.join(self._src, rel) if rel else self._src
            try:
                with os.scandir(src) as it:
                    present = {e.name: e for e in it}
            except OSError:
                changed.append(rel or ".")
                continue
            prefix = rel + "/" if rel else ""
            for name, entry in listing.items():
                found = present.pop(name, None)
                if found is None or _moved(found, entry):
                    changed.append(prefix + name)
            changed.extend(prefix + name for name, e in present.items() if self._left_out(
                prefix + name, e))
        return list(dict.fromkeys(changed))  # a name that vanished may also show as moved

    def _left_out(self, rel: str, entry: os.DirEntry[str]) -> bool:
        """Whether a source entry the manifest does not name should have been staged (a
        file created during the capture) rather than left out by a rule."""
        if rel in self._skipped or entry.name.endswith(sqlite_copy.SIDECARS):
            return False  # unreadable, or a database's sidecar (checked through the db)
        if self.excludes and is_excluded(self.exclude_prefix + rel, self.excludes):
            return False
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            return True  # came and went
        return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)

    # --- one pass ------------------------------------------------------------

    def _pass(self, strict: bool, persist: bool = True) -> StageStats:
        started = time.monotonic()
        self._abandon_pending()  # a deferred capture that was never finished
        changes = self._take_changes()  # before anything is read: later events are kept
        self._vouch(changes)
        stats = self._stats = StageStats(ctime_why=self._ctime_why)
        self._strict = strict
        self._modified = set()
        self._current = self._staging
        self._vanished = set()
        self._skipped = set()
        if self._excluded_for != self.excludes or len(self._excluded) > _EXCLUDE_CACHE_MAX:
            self._excluded = {}
            self._excluded_for = list(self.excludes)
        with self.lock():
            try:
                self._ensure_loaded()
                self._visited = set()
                if self._choose_scan(changes):
                    assert changes is not None
                    self._mirror_tracked(changes)
                else:
                    self._mirror()
                stats.dirs_scanned = len(self._visited)
                if persist and not self._persisted:
                    self._write_manifest()
            except OSError as exc:
                self._need_sweep = True  # temp names or half-done removals may be left
                self._tracked_base = False
                raise self._os_error(exc) from exc
            except BaseException:
                self._need_sweep = True
                self._tracked_base = False
                raise
            self._tracked_base = self._tracker is not None
        stats.duration_s = time.monotonic() - started
        return stats

    def _vouch(self, changes: Changes | None) -> None:
        """Forget the vouch for every file an event named since the last take; for all of
        them when the tracker gave up or is not running (events may have been lost)."""
        if changes is None or changes.reason is not None:
            self._vouched = set()
            # A tracker that gave up was re-armed by take(): copies from now on are watched.
            self._vouching = changes is not None and self._frozen_ns is None
            return
        self._vouched -= changes.names
        # Not from a snapshot: a write between the snapshot and this take would be in the
        # names just forgotten, and the copy from the snapshot would not hold it.
        self._vouching = self._frozen_ns is None

    def _absorb_events(self, rel: str) -> None:
        """Just before a recently written file is read: take the events raised so far, so
        that those naming it (writes the copy about to begin will hold) do not withdraw
        its vouch at the next pass. The rest is kept for the next pass, as
        changed_since_capture() keeps what it takes. A write that has not returned yet
        raises its event after this, and that event withdraws the vouch."""
        if self._tracker is None:
            return
        early = self._tracker.take()
        if early.reason is not None:
            self._vouching = False  # the tracker gave up: the next pass clears every vouch
        else:
            early.names.discard(rel)
        self._carry.merge(early)

    def _choose_scan(self, changes: Changes | None) -> bool:
        """Whether this pass may visit only what the tracker named; says why in the stats."""
        stats = self._stats
        if changes is None:
            stats.scan_reason = "no change tracking"
        elif changes.reason is not None:
            stats.scan_reason = f"change tracking gave up: {changes.reason}"
        elif not self._tracked_base:
            stats.scan_reason = "first pass since change tracking began"
        else:
            stats.scan = "tracked"
            stats.scan_reason = (
                f"inotify: {len(changes.dirs)} directories changed, "
                f"{len(changes.fresh)} new subtrees since the last pass"
            )
            return True
        stats.scan = "full"
        return False

    def _os_error(self, exc: OSError) -> CleancutError:
        where = exc.filename
        if not where or TEMP_PREFIX in os.path.basename(where):
            where = self._current or self._staging  # the real name, not our temp name
        if exc.errno in _NOSPACE:
            return NoSpace(f"no space left on device while staging: {where}")
        return CleancutError(f"cannot stage {where}: {exc.strerror or exc}")

    def _mirror(self) -> None:
        """A full pass: every directory of the source."""
        self._walk(_Step("", -1, "", self._tree, None, None, self._open_source()), None)

    def _mirror_tracked(self, changes: Changes) -> None:
        """A tracked pass: only the directories the tracker named (parents first), and
        subtrees that are new; an unchanged subdirectory is not entered."""
        todo = sorted(changes.dirs | changes.fresh, key=lambda r: (r.count("/") if r else -1, r))
        for rel in todo:
            if rel in self._visited or rel not in self._dirs:
                continue  # walked already, or not staged (excluded, or removed just now)
            if not rel:
                root = _Step(
                    "", -1, "", self._tree, None, None, self._open_source(), full=False
                )
                self._walk(root, changes.fresh)
                continue
            parent_fd = self._open_parent(rel)
            if parent_fd < 0:
                continue
            try:
                first = self._start_step(rel, parent_fd, changes.fresh)
                if first is not None:
                    self._walk(first, changes.fresh)
            finally:
                os.close(parent_fd)

    def _open_parent(self, rel: str) -> int:
        """The descriptor of `rel`'s parent directory in the source, each component opened
        through the one before without following links; -1 if that path is gone."""
        fd = self._open_source()
        for part in rel.split("/")[:-1]:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError:
                os.close(fd)
                self._vanished.add(rel)
                return -1
            os.close(fd)
            fd = child
        return fd

    def _start_step(self, rel: str, parent_fd: int, fresh: set[str]) -> _Step | None:
        parent, _, name = rel.rpartition("/")
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            self._vanished.add(rel)  # its parent's scan (it changed too) stages what is there
            return None
        dst = os.path.join(self._tree, rel)
        return _Step(rel, parent_fd, name, dst, st, self._dirs[parent], full=rel in fresh)

    def _walk(self, first: _Step, fresh: set[str] | None) -> None:
        """Mirror the directory of `first` and, below it, every subdirectory when `fresh`
        is None (a full pass); otherwise only subdirectories that are new to staging, in
        `fresh`, or under a directory walked whole."""
        # Depth first; a directory's mode and mtime are set after its children (post order),
        # since staging a child changes the directory's mtime. A directory's descriptor
        # stays open until its post-order step, so only the current path's are open.
        stack: list[_Step] = [first]
        try:
            while stack:
                step = stack.pop()
                if step.done:
                    if step.fd >= 0:
                        os.close(step.fd)
                        step.fd = -1
                    assert step.st is not None  # set when the step was first popped
                    self._finish_dir(step.rel, step.dst, step.st, step.holder, step.name)
                    continue
                if step.fd < 0:
                    step.fd = self._open_dir(step)
                step.done = True
                stack.append(step)  # from here on, the finally below closes its descriptor
                if step.st is None:  # the source root
                    step.st = os.fstat(step.fd)
                self._visited.add(step.rel)
                listing = self._dirs.setdefault(step.rel, {})
                whole = fresh is None or step.full
                known: set[str] = (
                    set() if whole else {n for n, e in listing.items() if e[0] == DIR}
                )
                prefix = step.rel + "/" if step.rel else ""
                for child, child_st in self._sync_dir(step.rel, step.fd, step.dst):
                    rel = prefix + child
                    full = whole or child not in known or (fresh is not None and rel in fresh)
                    if not full:
                        continue  # unchanged below, says the tracker (else it is in its list)
                    stack.append(
                        _Step(
                            rel, step.fd, child, os.path.join(step.dst, child),
                            child_st, listing, full=full,
                        )
                    )  # fmt: skip
        finally:
            for step in stack:
                if step.fd >= 0 and step.done:
                    os.close(step.fd)

    def _open_source(self) -> int:
        """The source directory's descriptor; the given path is followed if it is a symlink."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return os.open(self._read, flags)
        except NotADirectoryError:
            raise CleancutError(f"source {self.source} is not a directory") from None
        except OSError as exc:
            raise CleancutError(f"cannot read source {self.source}: {exc.strerror}") from exc

    def _open_dir(self, step: _Step) -> int:
        """Open a listed subdirectory through its parent's descriptor, never through a link.
        -1 if it is gone or became something else (then it is staged as empty: the next
        pass stages what is there now)."""
        if self.before_open is not None:
            self.before_open(step.rel)
        try:
            return os.open(step.name, DIR_FLAGS, dir_fd=step.parent_fd)
        except FileNotFoundError:
            self._vanished.add(step.rel)
        except OSError as exc:
            self._vanished.add(step.rel)
            self._warn_open(step.parent_fd, step.name, step.rel, exc, "cannot list directory")
        return -1

    def _warn_open(self, dir_fd: int, name: str, rel: str, exc: OSError, what: str) -> None:
        """One warning: the entry became something else since the listing, or it failed."""
        try:
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return  # gone: vanished, not worth a warning
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            self._stats.warnings.append(
                f"{rel}: became {kind_of(now.st_mode)} after it was listed, skipped"
            )
        else:
            self._stats.warnings.append(f"{rel}: {what} ({exc.strerror}), not staged")
            self._skipped.add(rel)

    def _sync_dir(self, rel: str, fd: int, dst: str) -> list[tuple[str, os.stat_result]]:
        """Mirror one directory's entries; returns its subdirectories to descend into.
        `fd` is the directory's descriptor, -1 if it could not be opened (staged empty)."""
        listing = self._dirs.setdefault(rel, {})
        entries: list[os.DirEntry[str]] = []
        if fd >= 0:
            try:
                # Listed through the descriptor: the entries' stat() is relative to it too.
                with os.scandir(fd) as it:
                    entries = list(it)
            except OSError as exc:
                self._stats.warnings.append(
                    f"{rel or '.'}: cannot list directory ({exc.strerror}), contents not staged"
                )
                self._skipped.add(rel)
        scan = _Scan(rel, fd, dst, listing)
        self._scan(scan, entries, stash_sidecars=True)
        self._settle(scan)
        if scan.side:
            # Sidecars of a database are never staged; any other "-wal" etc. is a plain file.
            rest = [e for n, e in scan.side.items() if n[: n.rindex("-")] not in scan.dbs]
            self._scan(scan, rest, stash_sidecars=False)
            self._settle(scan)
        seen = scan.seen
        if len(listing) != len(seen):
            for name in [n for n in listing if n not in seen]:
                self._remove(scan, name)
        return scan.subdirs

    def _scan(self, scan: _Scan, entries: list[os.DirEntry[str]], stash_sidecars: bool) -> None:
        """The hot loop: one lstat per entry; unchanged files cost nothing more."""
        listing = scan.listing
        seen = scan.seen
        excludes = self.excludes
        excluded = self._excluded
        prefix = scan.prefix
        scanned = 0
        # With fine-grained ctimes an unchanged ctime proves a copy current, and so does the
        # tracker's silence about a file since its copy; else a file written within a tick
        # of its copy may have been written again unseen (the racy rule).
        racy_rule = bool(self._ctime_why)
        vouched = self._vouched
        for entry in entries:
            name = entry.name
            if stash_sidecars and name.endswith(sqlite_copy.SIDECARS):
                scan.side[name] = entry
                continue
            if excludes:
                rel = prefix + name
                hit = excluded.get(rel)
                if hit is None:
                    hit = excluded[rel] = is_excluded(self.exclude_prefix + rel, excludes)
                if hit:
                    continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                self._vanished.add(prefix + name)
                continue  # vanished: removed from staging below
            mode = st.st_mode
            old = listing.get(name)
            if stat.S_ISREG(mode):
                scanned += 1
                if (
                    old is not None
                    and old[0] in "fs"
                    and old[_CTIME] == st.st_ctime_ns
                    and old[_INO] == st.st_ino
                    and old[_MTIME] == st.st_mtime_ns
                    and old[_SIZE] == st.st_size
                    and not (racy_rule and self._racy(prefix + name, old, vouched))
                ):
                    if old[0] == FILE:
                        seen.add(name)
                    else:
                        scan.dbs_to_check.append((name, st))
                    continue
                scan.to_copy.append((name, st))
            elif stat.S_ISDIR(mode):
                if old is None or old[0] != DIR:
                    self._make_dir(scan, name)
                seen.add(name)
                scan.subdirs.append((name, st))
            elif stat.S_ISLNK(mode):
                scanned += 1
                try:
                    target = os.readlink(name, dir_fd=scan.fd)
                except OSError:
                    continue
                if not (
                    old is not None
                    and old[0] == LINK
                    and old[1] == target
                    and old[2] == st.st_mtime_ns
                ):
                    self._stage_link(scan, name, target, st)
                seen.add(name)
            # Sockets, fifos and devices are not staged (the Archiver skips them too).
        self._stats.files_scanned += scanned

    def _racy(self, rel: str, old: Entry, vouched: set[str]) -> bool:
        """Whether a file whose metadata did not move since its copy must be copied again:
        written within a tick of that copy (fsio/racy.py), and not vouched for by the
        tracker (no event named it since the take before the copy)."""
        if not is_racy(old[_CTIME], old[_COPIED]):
            return False
        if rel in vouched:
            self._stats.racy_vouched += 1
            return False
        return True

    def _settle(self, scan: _Scan) -> None:
        """Check databases against their -wal, then copy what the scan found changed."""
        for name, st in scan.dbs_to_check:
            old = scan.listing[name]
            wal = self._wal(scan, name)
            # WAL-mode commits land in the -wal and leave the main file's metadata alone.
            if wal == old[_WAL] and (wal is None or not is_racy(wal[1], old[_COPIED])):
                scan.seen.add(name)
                scan.dbs.add(name)
            else:
                scan.to_copy.append((name, st))
        scan.dbs_to_check = []
        for name, st in scan.to_copy:
            kind = self._stage_file(scan, name, st)
            if kind is not None:
                if self._vouching:  # copied after this pass's take: events from here on
                    self._vouched.add(scan.prefix + name)
                scan.seen.add(name)
                if kind == DB:
                    scan.dbs.add(name)
        scan.to_copy = []

    # --- copying ---------------------------------------------------------------

    def _stage_file(self, scan: _Scan, name: str, st: os.stat_result) -> str | None:
        """Copy one regular file (or database) into staging; its kind, or None if skipped."""
        rel = scan.prefix + name
        started = self._frozen_ns or time.time_ns()
        if self.before_open is not None:
            self.before_open(rel)
        if self._vouching and is_racy(st.st_ctime_ns, started):
            self._absorb_events(rel)
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=scan.fd)
        except (FileNotFoundError, NotADirectoryError):
            self._vanished.add(rel)
            return None  # vanished
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):  # became a symlink or a socket
                self._vanished.add(rel)
            self._warn_open(scan.fd, name, rel, exc, "cannot read")
            return None
        try:
            # Metadata taken before the data is read: a write during the copy moves it on,
            # and the next pass copies the file again.
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                # A FIFO or a device put in its place after the listing: never read it.
                self._vanished.add(rel)
                self._stats.warnings.append(
                    f"{rel}: became {kind_of(fst.st_mode)} after it was listed, skipped"
                )
                return None
            head = os.pread(fd, 20, 0) if fst.st_size >= 16 else b""
            if head[:16] == sqlite_copy.HEADER:
                # Held open while SQLite copies, so that its inode stays ours to compare.
                wal_mode = head[18:20] == sqlite_copy.WAL_VERSIONS
                return self._stage_db(scan, name, fd, fst, started, wal_mode)
            self._copy_plain(scan, name, fd, fst, started)
            return FILE
        finally:
            os.close(fd)

    def _copy_plain(
        self, scan: _Scan, name: str, fd: int, fst: os.stat_result, started: int
    ) -> None:
        """Copy under a temp name, then rename: a crash leaves the old copy, never half.
        A file that only grew since its last copy gets its new tail appended instead."""
        old = scan.listing.get(name)
        if (
            old is not None
            and old[0] == FILE
            and old[_INO] == fst.st_ino
            and fst.st_size > old[_SIZE]
            and self._append_tail(scan, name, fd, fst, old, started)
        ):
            return
        self._prepare_slot(scan, name)
        tmp = self._temp(scan.dst)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            reflinked, nbytes = self._copier.whole(fd, out, fst.st_dev)
            os.fchmod(out, stat.S_IMODE(fst.st_mode))
            os.utime(out, ns=(fst.st_atime_ns, fst.st_mtime_ns))
            staged_ino = os.fstat(out).st_ino
            os.close(out)
            out = -1
            # Staging never holds a partial file under a real name.
            os.replace(tmp, os.path.join(scan.dst, name))
        except BaseException:
            if out >= 0:
                os.close(out)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        scan.listing[name] = [
            FILE,
            fst.st_size,
            fst.st_mtime_ns,
            fst.st_ctime_ns,
            fst.st_ino,
            started,
            staged_ino,
        ]
        self._changed(scan.rel)
        stats = self._stats
        stats.files_copied += 1
        stats.bytes_copied += nbytes
        stats.reflinked += reflinked

    def _append_tail(
        self, scan: _Scan, name: str, fd: int, fst: os.stat_result, old: Entry, started: int
    ) -> bool:
        """Append the source's new tail to the staged copy, if that copy is the one the
        manifest names and its prefix still matches the source (stage_copy.Copier.tail).
        False when it cannot: the caller copies the whole file. If this fails half way,
        the manifest still names the old size, and the next pass truncates back to it."""
        path = os.path.join(scan.dst, name)
        try:
            out = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            ost = os.fstat(out)
            if not stat.S_ISREG(ost.st_mode) or ost.st_ino != old[_STAGED]:
                return False
            self._current = path
            appended = self._copier.tail(fd, out, old[_SIZE], fst.st_size)
            if appended is None:
                return False
            os.fchmod(out, stat.S_IMODE(fst.st_mode))
            os.utime(out, ns=(fst.st_atime_ns, fst.st_mtime_ns))
        finally:
            os.close(out)
        scan.listing[name] = [
            FILE, fst.st_size, fst.st_mtime_ns, fst.st_ctime_ns, fst.st_ino, started, ost.st_ino
        ]  # fmt: skip
        self._changed(scan.rel)
        stats = self._stats
        stats.files_copied += 1
        stats.tails += 1
        stats.bytes_copied += appended
        return True

    def _stage_db(
        self, scan: _Scan, name: str, fd: int, fst: os.stat_result, started: int,
        wal_mode: bool,
    ) -> str | None:
        """Stage a database through SQLite, never as a plain byte copy: for a WAL database
        in a deferred capture, pinned now and copied by finish(); for a rollback-journal
        database where the filesystem has reflinks, cloned under its read lock
        (sqlite_clone.py); else copied now through the backup API."""
        rel = scan.prefix + name
        wal = self._wal(scan, name)  # before the copy, like the main file's metadata
        hostile = self._hostile_sidecar(scan, name)
        if hostile:
            self._stats.warnings.append(
                f"{rel}: {hostile}, which SQLite would open by name (block on or follow); "
                "database not staged"
            )
            self._skipped.add(rel)
            return DB if scan.listing.get(name, [None])[0] == DB else None
        self._prepare_slot(scan, name)
        if wal_mode and self._defer:
            try:
                pinned = self._pin_db(scan, name, fst, started, wal)
            except sqlite_copy.NotADatabase as exc:
                self._stats.warnings.append(
                    f"{rel}: starts like a SQLite database but SQLite cannot read it ({exc}); "
                    "staged byte for byte"
                )
                return self._stage_unreadable_db(scan, name)
            if pinned != "not wal":
                return DB if pinned == "pinned" else None
        tmp = self._temp(scan.dst)
        try:
            if sqlite_clone.clone_database(
                f"/proc/self/fd/{scan.fd}/{name}", fd, tmp, fst.st_dev, self._copier, rel,
                self.sqlite_timeout,
            ):  # fmt: skip
                self._stats.sqlite_cloned += 1
                self._stats.reflinked += 1
                return self._install_db(scan, name, tmp, fst, started, wal, cloned=True)
        except sqlite_copy.NotADatabase:
            pass  # the backup API says the same below, and stages it byte for byte
        except CleancutError:
            pass  # locked, or the clone failed: the backup API copy below retries
        try:
            # By name, since SQLite opens nothing else; the name is inside the directory
            # we opened, not a path that a swapped parent could redirect.
            sqlite_copy.copy_database(
                f"/proc/self/fd/{scan.fd}/{name}", tmp, rel, timeout=self.sqlite_timeout
            )
            if not self._still(scan, name, fst):
                sqlite_copy.remove_copy(tmp)
                self._vanished.add(rel)
                self._stats.warnings.append(
                    f"{rel}: replaced while SQLite copied it, skipped; the next pass copies it"
                )
                return None
        except sqlite_copy.NotADatabase as exc:
            # SQLite itself cannot read it, so no writer can be keeping it consistent:
            # keep the bytes as they are, and say so.
            self._stats.warnings.append(
                f"{rel}: starts like a SQLite database but SQLite cannot read it ({exc}); "
                "staged byte for byte"
            )
            return self._stage_unreadable_db(scan, name)
        except CleancutError as exc:
            if self._strict or isinstance(exc, NoSpace):
                raise
            self._stats.warnings.append(f"{exc}; left for the capture")
            # Keep any older staged copy: its entry no longer matches, so capture re-copies.
            return DB if scan.listing.get(name, [None])[0] == DB else None
        return self._install_db(scan, name, tmp, fst, started, wal, cloned=False)

    def _install_db(
        self, scan: _Scan, name: str, tmp: str, fst: os.stat_result, started: int,
        wal: list[int] | None, *, cloned: bool,
    ) -> str | None:
        """Put the database copy `tmp` in place under `name` and record it."""
        rel = scan.prefix + name
        if cloned and not self._still(scan, name, fst):
            sqlite_copy.remove_copy(tmp)
            self._vanished.add(rel)
            self._stats.warnings.append(
                f"{rel}: replaced while it was cloned, skipped; the next pass copies it"
            )
            return None
        try:
            os.chmod(tmp, stat.S_IMODE(fst.st_mode))
            os.utime(tmp, ns=(fst.st_atime_ns, fst.st_mtime_ns))
            staged = os.stat(tmp)
            os.replace(tmp, os.path.join(scan.dst, name))
        except BaseException:
            sqlite_copy.remove_copy(tmp)
            raise
        scan.listing[name] = [
            DB,
            fst.st_size,
            fst.st_mtime_ns,
            fst.st_ctime_ns,
            fst.st_ino,
            started,
            staged.st_ino,
            wal,
        ]
        self._changed(scan.rel)
        self._unverified.add(rel)
        stats = self._stats
        stats.files_copied += 1
        if not cloned:  # a clone shares the source's extents: no bytes copied
            stats.sqlite_copied += 1
            stats.bytes_copied += staged.st_size
        return DB

    def _pin_db(
        self, scan: _Scan, name: str, fst: os.stat_result, started: int, wal: list[int] | None
    ) -> str:
        """Inside the pause: open a read transaction on a WAL database, fixing its state at
        this moment, and leave the copy to finish(). The manifest entry names the source as
        it is now and no staged inode yet (-1: a sweep drops it if finish() never runs).
        Returns "pinned", "skipped" (replaced meanwhile) or "not wal" (copy it now)."""
        rel = scan.prefix + name
        pin = sqlite_copy.pin(
            f"/proc/self/fd/{scan.fd}/{name}", rel, timeout=self.sqlite_timeout
        )
        if pin is None:
            return "not wal"
        if not self._still(scan, name, fst):
            pin.release()
            self._vanished.add(rel)
            self._stats.warnings.append(
                f"{rel}: replaced while SQLite opened it, skipped; the next pass copies it"
            )
            return "skipped"
        self._pending.append(_Pending(scan.rel, name, pin, fst))
        scan.listing[name] = [
            DB, fst.st_size, fst.st_mtime_ns, fst.st_ctime_ns, fst.st_ino, started, -1, wal
        ]  # fmt: skip
        self._changed(scan.rel)
        self._stats.sqlite_pinned += 1
        return "pinned"

    def _stage_unreadable_db(self, scan: _Scan, name: str) -> str | None:
        """A file with a database header that SQLite rejects: staged as a plain file."""
        started = self._frozen_ns or time.time_ns()
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=scan.fd)
        except OSError:
            return None
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return None
            self._copy_plain(scan, name, fd, fst, started)
        finally:
            os.close(fd)
        return FILE

    def _hostile_sidecar(self, scan: _Scan, name: str) -> str | None:
        """What is wrong with a -wal, -shm or -journal beside a database, if anything:
        SQLite opens them by name, blocking and following links, so each must be a
        regular file or absent."""
        for suffix in sqlite_copy.SIDECARS:
            try:
                st = os.stat(name + suffix, dir_fd=scan.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                return f"{name}{suffix} is {kind_of(st.st_mode)}"
        return None

    def _still(self, scan: _Scan, name: str, fst: os.stat_result) -> bool:
        """Whether `name` is still the regular file we opened (SQLite opened it by name)."""
        try:
            now = os.stat(name, dir_fd=scan.fd, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(now.st_mode) and (now.st_dev, now.st_ino) == (fst.st_dev, fst.st_ino)

    def _wal(self, scan: _Scan, name: str) -> list[int] | None:
        """The -wal's (size, mtime, inode); an empty or missing -wal holds no commits (None).

        Not its ctime: SQLite running as root fchown()s the -wal on every open, even a
        read-only one (our own copy included), which moves the ctime without a write.
        The racy rule therefore looks at the -wal's mtime.
        """
        entry = scan.side.get(name + "-wal")
        if entry is None:
            return None
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return None
        if not st.st_size:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _stage_link(self, scan: _Scan, name: str, target: str, st: os.stat_result) -> None:
        """Recreate a symlink as it is; it is never followed."""
        self._prepare_slot(scan, name)
        tmp = self._temp(scan.dst)
        os.symlink(target, tmp)
        try:
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            os.replace(tmp, os.path.join(scan.dst, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        scan.listing[name] = [LINK, target, st.st_mtime_ns]
        self._changed(scan.rel)
        self._stats.files_copied += 1

    def _make_dir(self, scan: _Scan, name: str) -> None:
        old = scan.listing.get(name)
        self._touch(scan.rel, scan.dst)
        if old is not None:
            self._remove(scan, name)
        path = os.path.join(scan.dst, name)
        self._current = path
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # something staged without a manifest entry: not ours to keep
            _remove_path(path)
            os.mkdir(path, 0o700)
        scan.listing[name] = [DIR, -1, -1]  # mode and mtime set once its children are staged
        self._dirs[scan.prefix + name] = {}
        self._encoded.pop(scan.prefix + name, None)
        self._changed(scan.rel)

    def _finish_dir(
        self, rel: str, dst: str, st: os.stat_result, holder: Listing | None, name: str
    ) -> None:
        """Give a staged directory the source's mode and mtime, once its children are done."""
        old = self._root if holder is None else holder.get(name)
        mode = stat.S_IMODE(st.st_mode)
        if (
            rel not in self._modified
            and old is not None
            and old[1] == mode
            and old[2] == st.st_mtime_ns
        ):
            return
        self._current = dst
        os.chmod(dst, mode)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        entry = [DIR, mode, st.st_mtime_ns]
        if holder is None:
            self._root = entry
            self._persisted = False
        else:
            holder[name] = entry
            self._changed(rel.rpartition("/")[0])

    # --- deferred work (finish) --------------------------------------------------

    def _copy_pinned(self, pending: _Pending) -> None:
        """Copy one pinned database into its staged place (temp name, then rename), and
        give the staged directory back the mode and mtime the source had."""
        rel = pending.rel
        listing = self._dirs.get(rel)
        entry = None if listing is None else listing.get(pending.name)
        if listing is None or entry is None or entry[0] != DB or entry[_STAGED] != -1:
            pending.pin.release()  # dropped from staging since (a later pass)
            return
        dst = os.path.join(self._tree, rel) if rel else self._tree
        path = os.path.join(dst, pending.name)
        dir_st = os.stat(dst)
        if dir_st.st_mode & 0o700 != 0o700:
            os.chmod(dst, stat.S_IMODE(dir_st.st_mode) | 0o700)
        tmp = self._temp(dst)
        self._current = path
        try:
            pending.pin.copy_to(tmp)
            os.chmod(tmp, stat.S_IMODE(pending.st.st_mode))
            os.utime(tmp, ns=(pending.st.st_atime_ns, pending.st.st_mtime_ns))
            staged = os.stat(tmp)
            os.replace(tmp, path)
        except BaseException:
            sqlite_copy.remove_copy(tmp)
            raise
        finally:
            os.chmod(dst, stat.S_IMODE(dir_st.st_mode))
            os.utime(dst, ns=(dir_st.st_atime_ns, dir_st.st_mtime_ns))
        entry[_STAGED] = staged.st_ino
        self._changed(rel)
        self._unverified.add(f"{rel}/{pending.name}" if rel else pending.name)
        stats = self._stats
        stats.files_copied += 1
        stats.sqlite_copied += 1
        stats.bytes_copied += staged.st_size
        stats.bytes_after_resume += staged.st_size

    def _abandon_pending(self) -> None:
        """Let go of pins that were not copied. Their entries keep staged inode -1, which
        no staged file has: the next pass sweeps them away and copies the databases."""
        if not self._pending:
            return
        for pending in self._pending:
            pending.pin.release()
        self._pending = []
        self._need_sweep = True

    # --- staging-side helpers ----------------------------------------------------

    def _touch(self, rel: str, dst: str) -> None:
        """About to write into the staged directory `dst`: make sure we may (a mirrored
        mode can forbid it), and remember to restore its mode and mtime afterwards."""
        if rel in self._modified:
            return
        self._modified.add(rel)
        st = os.stat(dst)
        if st.st_mode & 0o700 != 0o700:
            os.chmod(dst, stat.S_IMODE(st.st_mode) | 0o700)

    def _prepare_slot(self, scan: _Scan, name: str) -> None:
        """Make room for a file or symlink at `name`: a staged directory there goes first."""
        self._touch(scan.rel, scan.dst)
        self._current = os.path.join(scan.dst, name)
        old = scan.listing.get(name)
        if old is not None and old[0] == DIR:
            self._remove(scan, name)

    def _temp(self, directory: str) -> str:
        # In the destination's directory, so that os.replace is a rename on one filesystem.
        return os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))

    def _remove(self, scan: _Scan, name: str) -> None:
        """Remove a staged entry that the source no longer has (or has as another kind)."""
        self._touch(scan.rel, scan.dst)
        old = scan.listing.pop(name)
        path = os.path.join(scan.dst, name)
        self._current = path
        if old[0] == DIR:
            self._stats.files_deleted += self._forget_dir(scan.prefix + name)
            _rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._stats.files_deleted += 1
        self._changed(scan.rel)

    def _forget_dir(self, rel: str) -> int:
        """Drop a staged directory's entries from the manifest; how many were not dirs."""
        count = 0
        pending = [rel]
        while pending:
            current = pending.pop()
            self._encoded.pop(current, None)
            for name, entry in self._dirs.pop(current, {}).items():
                if entry[0] == DIR:
                    pending.append(f"{current}/{name}")
                else:
                    count += 1
        return count

    def _changed(self, rel: str) -> None:
        """The listing of staged directory `rel` changed: re-encode it and persist."""
        self._encoded.pop(rel, None)
        self._persisted = False

    def _claim_staging(self) -> None:
        """Create the staging directory with our marker, or check that it is ours.

        A directory without the marker is taken only when it is empty (or was made by a
        cleancut from before the marker); anything else raises NotOurs: mirroring into it
        would delete whatever it holds that the source lacks.
        """
        if os.path.lexists(self._staging) and not os.path.isdir(self._staging):
            raise NotOurs(
                f"staging path {self.staging} exists and is not a directory: left untouched; "
                "give --staging a new or empty directory"
            )
        os.makedirs(self._staging, mode=0o700, exist_ok=True)
        marker = os.path.join(self._staging, MARKER)
        try:
            if stat.S_ISREG(os.lstat(marker).st_mode):
                return
        except FileNotFoundError:
            pass
        names = set(os.listdir(self._staging))
        if names and not (names <= _LEGACY_NAMES and self._legacy_staging(names)):
            shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
            raise NotOurs(
                f"staging directory {self.staging} holds files cleancut did not create "
                f"({shown}; no {MARKER} marker): the mirror would delete them; "
                "give --staging a new or empty directory"
            )
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _MARKER_TEXT)
        finally:
            os.close(fd)

    def _legacy_staging(self, names: set[str]) -> bool:
        """Whether a marker-less directory is one an older cleancut staged into: a lock file
        alone, or a manifest of ours beside it."""
        if names <= {".lock"}:
            return True
        return stage_manifest.is_ours(self._manifest)

    # --- the manifest ----------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded and os.path.isdir(self._tree):
            if self._need_sweep:
                self._sweep()
            return
        if not self._load():
            self._start_over()
        else:
            self._sweep()
        self._loaded = True

    def _load(self) -> bool:
        """Read the manifest; False if it is missing, damaged or from another source or boot."""
        if not os.path.isdir(self._tree):
            return False
        try:
            root, dirs = stage_manifest.read_manifest(self._manifest, self._src, self._boot)
        except (OSError, ValueError, TypeError, IndexError):
            return False
        self._root = root
        self._dirs = dirs
        self._encoded = {}
        self._persisted = True
        return True

    def _start_over(self) -> None:
        """No manifest to trust: nothing staged can be trusted either."""
        for path in (self._manifest, self._manifest + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        _remove_path(self._tree)
        os.mkdir(self._tree, 0o700)
        self._root = None
        self._dirs = {"": {}}
        self._encoded = {}
        self._persisted = False
        self._need_sweep = False

    def _sweep(self) -> None:
        """Check staging against the manifest: drop entries whose staged copy is missing or
        not the one recorded, and remove what the manifest does not name (temp names left
        by an interrupted pass, among them). What is dropped is copied again."""
        dirs: dict[str, Listing] = {}
        pending = [""]
        while pending:
            rel = pending.pop()
            listing = self._dirs.get(rel, {})
            dst = os.path.join(self._tree, rel) if rel else self._tree
            with os.scandir(dst) as it:
                staged = {e.name: e for e in it}
            kept: Listing = {}
            for name, entry in listing.items():
                found = staged.pop(name, None)
                if found is None:
                    continue
                if _matches(found, entry):
                    kept[name] = entry
                    if entry[0] == DIR:
                        pending.append(f"{rel}/{name}" if rel else name)
                else:
                    staged[name] = found  # removed below, copied again
            for name in staged:
                self._touch(rel, dst)
                _remove_path(os.path.join(dst, name))
            if len(kept) != len(listing):
                self._persisted = False
            dirs[rel] = kept
        if len(dirs) != len(self._dirs):
            self._persisted = False
        self._dirs = dirs
        self._encoded = {}
        self._need_sweep = False

    def _write_manifest(self) -> None:
        """Atomically (temp, fsync, rename), after the copies it describes are in place."""
        blob, encoded = stage_manifest.encode(
            self._src, self._boot, self._root, self._dirs, self._encoded
        )
        self._current = self._manifest
        stage_manifest.write_atomically(self._staging, os.path.basename(self._manifest), blob)
        self._encoded = encoded
        self._persisted = True


class _Pending:
    """A database pinned inside the pause, to be copied into staging by finish()."""

    __slots__ = ("rel", "name", "pin", "st")

    def __init__(self, rel: str, name: str, pin: sqlite_copy.Pin, st: os.stat_result) -> None:
        self.rel = rel  # the staged directory
        self.name = name
        self.pin = pin
        self.st = st  # the source's stat when it was pinned (mode and times to give the copy)


class _Scan:
    """One directory being mirrored: where it is, and what the scan found to do."""

    __slots__ = (
        "rel",
        "prefix",
        "fd",
        "dst",
        "listing",
        "seen",
        "subdirs",
        "side",
        "dbs",
        "dbs_to_check",
        "to_copy",
    )

    def __init__(self, rel: str, fd: int, dst: str, listing: Listing) -> None:
        self.rel = rel
        self.prefix = rel + "/" if rel else ""
        self.fd = fd  # the source directory's descriptor; entries are opened relative to it
        self.dst = dst
        self.listing = listing
        self.seen: set[str] = set()  # names staged (kept or copied) in this pass
        self.subdirs: list[tuple[str, os.stat_result]] = []
        self.side: dict[str, os.DirEntry[str]] = {}  # names ending -wal, -shm, -journal
        self.dbs: set[str] = set()  # names staged as databases in this pass
        self.dbs_to_check: list[tuple[str, os.stat_result]] = []
        self.to_copy: list[tuple[str, os.stat_result]] = []


class _Step:
    """One directory of the mirror's depth-first walk: opened (through its parent's
    descriptor) when first popped, finished (mode, mtime; descriptor closed) when popped
    again after its children."""

    __slots__ = ("rel", "parent_fd", "name", "dst", "st", "holder", "fd", "done", "full")

    def __init__(
        self,
        rel: str,
        parent_fd: int,
        name: str,
        dst: str,
        st: os.stat_result | None,
        holder: Listing | None,
        fd: int = -1,
        *,
        full: bool = True,
    ) -> None:
        self.rel = rel
        self.parent_fd = parent_fd
        self.name = name
        self.dst = dst
        self.st = st  # the source's stat as listed (the root's: fstat once opened)
        self.holder = holder  # the parent's listing (None for the root)
        self.fd = fd
        self.done = False
        self.full = full  # walk every subdirectory below (a tracked pass: a new subtree)


def _matches(found: os.DirEntry[str], entry: Entry) -> bool:
    """Whether a staged entry is the one the manifest recorded."""
    try:
        st = found.stat(follow_symlinks=False)
        kind = entry[0]
        if kind == DIR:
            return stat.S_ISDIR(st.st_mode)
        if kind == LINK:
            return stat.S_ISLNK(st.st_mode) and os.readlink(found.path) == entry[1]
        return stat.S_ISREG(st.st_mode) and st.st_ino == entry[_STAGED]
    except OSError:
        return False


def _moved(found: os.DirEntry[str], entry: Entry) -> bool:
    """Whether a source entry is no longer what the capture recorded for it."""
    try:
        st = found.stat(follow_symlinks=False)
        kind = entry[0]
        if kind == DIR:
            return not stat.S_ISDIR(st.st_mode)
        if kind == LINK:
            return not (
                stat.S_ISLNK(st.st_mode)
                and os.readlink(found.path) == entry[1]
                and st.st_mtime_ns == entry[2]
            )
        same = (
            stat.S_ISREG(st.st_mode)
            and st.st_size == entry[_SIZE]
            and st.st_mtime_ns == entry[_MTIME]
            and st.st_ctime_ns == entry[_CTIME]
            and st.st_ino == entry[_INO]
        )
        if kind == DB and same:
            return _wal_now(found.path) != entry[_WAL]
        return not same
    except OSError:
        return True


def _wal_now(path: str) -> list[int] | None:
    """A database's -wal as the manifest records it: [size, mtime, inode], None if empty."""
    try:
        st = os.lstat(path + "-wal")
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino] if st.st_size else None
