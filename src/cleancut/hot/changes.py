"""Change tracking between staging passes: inotify watches on every source directory.

The in-pause pass should visit only what changed since the pass before it, not scan
the whole workspace. A ChangeTracker watches every directory of the source (inotify,
through libc with ctypes) from before the first pass of a backup, and `take()` says
which directories saw an event since the previous `take()`: a file written, created,
deleted, renamed, its mode or times changed; and which entries the events named (a file
no event named since its copy is unchanged, whatever its timestamps say). A directory
created or moved into the tree is returned as a *fresh* subtree (watched from the moment
its creation was seen, and to be walked whole, since what was put in it before the watch
exists raised no event).

It never claims more than it knows. An overflowed event queue, a watch that could
not be added (the watch limit, a permission), a directory renamed inside the tree
(its watch now names a stale path), the source itself moved or removed: `take()`
then returns the reason instead of a set, the caller scans everything, and the
tracker re-arms its watches before that scan begins. Nothing is persisted: a
tracker lives as long as one backup's hold on its staging directory, so a cleancut
that restarts starts with a full scan.

Events report that something may have changed, never that nothing did: the caller
still compares metadata in the directories named. Reading files raises no event
(IN_ACCESS and IN_OPEN are not watched); SQLite opening a database as root raises
IN_ATTRIB on its -wal, which only makes that directory be looked at again.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import threading
from dataclasses import dataclass, field

from cleancut.archiver.backup import DIR_FLAGS

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCH_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_READ_SIZE = 1 << 16
# A directory that is gone, or was swapped for something else, when it is opened to be
# watched: the event in its parent covers it. Any other error leaves it unwatched.
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
# The source path itself may be a symlink (the Stager follows it too); nothing below it is.
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class Changes:
    """What changed since the last take(): `reason` is None when the sets can be trusted;
    otherwise it says why everything must be scanned."""

    dirs: set[str] = field(default_factory=set)  # directories (relative; "" the root)
    fresh: set[str] = field(default_factory=set)  # subtrees created or moved in: walk whole
    names: set[str] = field(default_factory=set)  # entries an event named (relative paths)
    reason: str | None = None

    def merge(self, other: Changes) -> None:
        self.dirs |= other.dirs
        self.fresh |= other.fresh
        self.names |= other.names
        self.reason = self.reason or other.reason


class _Libc:
    """inotify_init1 and inotify_add_watch from the C library, once per process."""

    _lib: ctypes.CDLL | None = None

    @classmethod
    def get(cls) -> ctypes.CDLL:
        if cls._lib is None:
            lib = ctypes.CDLL(None, use_errno=True)
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            cls._lib = lib
        return cls._lib


class ChangeTracker:
    """Watches `source` (a directory) for changes; see the module docstring.

    A background thread keeps the kernel's queue drained (an agent writing flat out
    would otherwise overflow it between passes); take() drains what is left, so it
    reports every event raised before it was called.
    """

    def __init__(self, source: str) -> None:
        self.source = os.path.abspath(source)
        self._lock = threading.Lock()
        self._fd = -1
        self._wds: dict[int, str] = {}
        self._changes = Changes()
        self._stop_r, self._stop_w = -1, -1
        self._kick_r, self._kick_w = -1, -1  # tells the thread that `_held` changed
        self._held = False
        self._thread: threading.Thread | None = None

    # --- life cycle ----------------------------------------------------------

    def start(self) -> str | None:
        """Watch the whole tree; None when every directory is watched, else why not
        (then take() keeps returning that reason: the caller scans everything)."""
        try:
            lib = _Libc.get()
            fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except (OSError, AttributeError) as exc:
            self._give_up(f"inotify is not available ({exc})")
            return self._changes.reason
        if fd < 0:
            code = ctypes.get_errno()
            self._give_up(f"inotify is not available ({os.strerror(code)})")
            return self._changes.reason
        self._fd = fd
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._kick_r, self._kick_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._watch_tree("")
        self._thread = threading.Thread(target=self._drain_loop, name="cleancut-inotify",
                                        daemon=True)
        self._thread.start()
        return self._changes.reason

    def close(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        for fd in (self._fd, self._stop_r, self._stop_w, self._kick_r, self._kick_w):
            if fd >= 0:
                os.close(fd)
        self._fd = self._stop_r = self._stop_w = self._kick_r = self._kick_w = -1
        self._wds = {}

    def hold(self, held: bool) -> None:
        """While held, the background thread leaves events in the kernel's queue instead
        of waking for each (inside the pause, a thread waking competes with the capture
        for the interpreter); take() still drains them all. Hold only for a short time:
        a queue that overflows meanwhile makes the next take() give up."""
        self._held = held
        if self._kick_w >= 0:
            with contextlib.suppress(BlockingIOError):
                os.write(self._kick_w, b"k")

    def take(self) -> Changes:
        """What changed since the last take() (or start()), and forget it. When the result
        has a reason, the watches were re-armed first: events from now on are seen, so a
        full scan that starts after this call misses nothing."""
        with self._lock:
            self._drain()
            taken, self._changes = self._changes, Changes()
        if taken.reason is not None:
            # Watch everything afresh: a new inotify instance, so no stale watch survives.
            # If that fails too, the next take() says why.
            self.close()
            self.start()
        return taken

    # --- watches ---------------------------------------------------------------

    def _watch_tree(self, top: str) -> None:
        """Watch `top` and every directory below it. Each directory is opened through its
        parent's descriptor without following links and watched through /proc/self/fd,
        so a directory swapped for a symlink is never watched through it."""
        parent = os.path.dirname(top)
        try:
            if top:
                parent_fd = _open_rel(self.source, parent)
                try:
                    fd = os.open(os.path.basename(top), DIR_FLAGS, dir_fd=parent_fd)
                finally:
                    os.close(parent_fd)
            else:
                fd = os.open(self.source, _ROOT_FLAGS)
        except OSError as exc:
            if exc.errno not in _GONE or not top:
                self._give_up(f"cannot watch {top or '.'} ({exc.strerror})")
            return  # gone already: its parent's event covers it
        pending = [(top, fd)]
        while pending:
            rel, fd = pending.pop()
            try:
                if not self._add_watch(rel, fd):
                    continue
                with os.scandir(fd) as it:
                    for entry in it:
                        try:
                            if not entry.is_dir(follow_symlinks=False):
                                continue
                            child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                        except OSError as exc:
                            if exc.errno in _GONE:
                                continue  # gone or swapped meanwhile: its parent's event says so
                            name = f"{rel}/{entry.name}" if rel else entry.name
                            self._give_up(f"cannot watch {name} ({exc.strerror})")
                            continue
                        pending.append((f"{rel}/{entry.name}" if rel else entry.name, child))
            except OSError as exc:
                self._give_up(f"cannot watch {rel or '.'} ({exc.strerror})")
            finally:
                os.close(fd)

    def _add_watch(self, rel: str, fd: int) -> bool:
        path = f"/proc/self/fd/{fd}".encode()
        wd = _Libc.get().inotify_add_watch(self._fd, path, WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            hint = " (raise fs.inotify.max_user_watches)" if code == errno.ENOSPC else ""
            self._give_up(f"cannot watch {rel or '.'}: {os.strerror(code)}{hint}")
            return False
        self._wds[wd] = rel
        return True

    # --- events -------------------------------------------------------------------

    def _drain_loop(self) -> None:
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        poller.register(self._kick_r, select.POLLIN)
        watching = False
        while True:
            if watching == self._held:  # held: stop polling the events; released: resume
                if watching:
                    poller.unregister(self._fd)
                else:
                    poller.register(self._fd, select.POLLIN)
                watching = not watching
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            if self._kick_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._kick_r, 64)
            if watching and self._fd in ready:
                with self._lock:
                    self._drain()

    def _drain(self) -> None:
        """Read every queued event (the lock held)."""
        if self._fd < 0:
            return
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._give_up(f"reading inotify events failed ({exc.strerror})")
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                raw = data[offset : offset + length].rstrip(b"\0")
                offset += length
                self._event(wd, mask, os.fsdecode(raw))

    def _give_up(self, reason: str) -> None:
        """Nothing this tracker says can be trusted until take(): keep the first reason."""
        if self._changes.reason is None:
            self._changes.reason = reason

    def _event(self, wd: int, mask: int, name: str) -> None:
        changes = self._changes
        if mask & IN_Q_OVERFLOW:
            self._give_up("the inotify event queue overflowed")
            return
        rel = self._wds.get(wd)
        if mask & IN_IGNORED:
            self._wds.pop(wd, None)
            return
        if rel is None:
            return  # a watch already dropped
        if mask & IN_UNMOUNT:
            self._give_up(f"the filesystem under {rel or '.'} was unmounted")
            return
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if not rel:
                self._give_up("the source directory itself was moved or removed")
            elif mask & IN_MOVE_SELF:
                self._give_up(f"directory {rel} was renamed (its watch names a stale path)")
            return
        changes.dirs.add(rel)
        if not name:
            return
        child = f"{rel}/{name}" if rel else name
        changes.names.add(child)
        if not mask & IN_ISDIR:
            return
        if mask & IN_MOVED_FROM:
            self._give_up(f"directory {child} was renamed (its watch names a stale path)")
        elif mask & (IN_CREATE | IN_MOVED_TO):
            changes.fresh.add(child)
            self._watch_tree(child)


def _open_rel(source: str, rel: str) -> int:
    """A descriptor of directory `rel` under `source`, every component opened through its
    parent without following links."""
    fd = os.open(source, _ROOT_FLAGS)
    for part in rel.split("/") if rel else []:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd

