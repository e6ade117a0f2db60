"""The ways a real agent writes its files, each with its own window of inconsistency.

These are deliberately the agent's habits, not best practice: a backup has to
cope with all of them. Each function is one way from the table in
docs/simulated-agent.md; none knows about the oracle.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .layout import Layout


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_replace(path: Path, data: bytes) -> None:
    """Write `<path>.<pid>.tmp`, fsync, rename over, fsync the directory."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Open with truncate, then write: for a moment the file is empty or partial."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def plain_copy(data: bytes, dst: Path) -> None:
    """A non-atomic copy (the .bak ring): create, then write."""
    with open(dst, "wb") as f:
        f.write(data)


def acknowledge(path: Path) -> Path:
    """The two-step delivery acknowledge: rename `<id>.json` to `<id>.delivered`, then delete."""
    delivered = path.with_suffix(".delivered")
    os.rename(path, delivered)
    return delivered


@contextlib.contextmanager
def lock_sidecar(path: Path, spin: float = 0.001) -> Iterator[None]:
    """Create `<path>.lock` exclusively with `{pid, createdAt}`, remove it after."""
    lock = path.with_name(path.name + ".lock")
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            time.sleep(spin)
    try:
        body = {"pid": os.getpid(), "createdAt": int(time.time() * 1000)}
        os.write(fd, json.dumps(body).encode())
    finally:
        os.close(fd)
    try:
        yield
    finally:
        os.unlink(lock)


class Appender:
    """Appends lines without fsync (transcripts, run logs, daily notes), one write() each.

    File descriptors stay open between appends, as a long-running agent keeps
    them; `fsync_all` is the flush the control protocol asks for.
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()

    def append(self, path: Path, data: bytes) -> None:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[path] = fd
        os.write(fd, data)

    def forget(self, path: Path) -> None:
        """Close the descriptor of a file about to be replaced (a trimmed run log)."""
        with self._lock:
            fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def fsync_all(self) -> None:
        with self._lock:
            fds = list(self._fds.values())
        for fd in fds:
            with contextlib.suppress(OSError):
                os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class DirectWrites:
    """The default mode: each way of writing straight to the files, as the table says.

    The agent writes through this or through `journalio.JournalWrites` (journal
    mode); both offer the same calls. `step()` groups writes into one journal
    record in journal mode and does nothing here; it yields the journal
    sequence number the writes go into (None here).
    """

    journaled = False

    def __init__(self) -> None:
        self.appender = Appender()

    def step(self) -> contextlib.AbstractContextManager[int | None]:
        return contextlib.nullcontext(None)

    def replace(self, path: Path, data: bytes) -> None:
        atomic_replace(path, data)

    def rewrite(self, path: Path, data: bytes) -> None:
        rewrite_in_place(path, data)

    def copy(self, data: bytes, dst: Path) -> None:
        plain_copy(data, dst)

    def append(self, path: Path, data: bytes) -> None:
        self.appender.append(path, data)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def lock(self, path: Path) -> contextlib.AbstractContextManager[None]:
        return lock_sidecar(path)

    def forget(self, path: Path) -> None:
        self.appender.forget(path)

    def make_dirs(self, layout: Layout) -> None:
        layout.make_dirs()

    def flush(self) -> None:
        self.appender.fsync_all()

    def close(self) -> None:
        self.appender.fsync_all()
        self.appender.close()
