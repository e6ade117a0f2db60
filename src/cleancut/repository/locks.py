"""The repository lock: one run that deletes at a time (today prune, and repair).

A lock is a plaintext JSON object under `locks/` naming its holder (operation, host,
pid, user, the host's boot and the process's start time) and an expiry that the
holder pushes forward while it runs. A lock whose holder provably no longer runs
(same host, pid gone or host rebooted) or whose expiry passed is stale; `cleancut
unlock` removes stale ones, `--force` live and unreadable ones too. Backups take no
lock (prune's safety margin covers them: prune/prune.py).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cleancut import clock, jsonparse
from cleancut.backend.appendonly import refuse_if_append_only
from cleancut.backend.base import Backend
from cleancut.clock import from_iso, iso
from cleancut.errors import ObjectNotFound, RepositoryLocked

LOCKS_PREFIX = "locks/"
LOCK_NAME = LOCKS_PREFIX + "prune"
LOCK_TTL = 1800.0  # refreshed while the run goes on; a crashed run's lock goes stale


@dataclass
class Lock:
    """A lock object as stored: who holds it, since when, until when."""

    name: str
    operation: str = "?"
    host: str = "?"
    pid: int = 0
    user: str = "?"
    created: str = ""
    expires: str = ""
    token: str = ""
    readable: bool = True
    boot_id: str = ""  # the holder host's boot: a lock from before a reboot is dead
    started: int = 0  # the holder's start time (clock ticks since boot): pid reuse

    @property
    def holder(self) -> str:
        return f"{self.operation} on {self.host} (pid {self.pid}, user {self.user})"

    def expired(self, now: datetime) -> bool:
        """An unreadable lock never expires by itself: only `unlock --force` removes it."""
        return self.readable and from_iso(self.expires) <= now

    def holder_gone(self) -> bool:
        """Provably dead: taken on this host, and its process is no longer running (or
        the host rebooted since). A lock from another host is never judged this way."""
        if not self.readable or self.host != socket.gethostname() or self.pid <= 0:
            return False
        if self.boot_id and self.boot_id != _boot_id():
            return True
        return not _process_runs(self.pid, self.started)

    def stale_reason(self, now: datetime) -> str | None:
        """Why the lock may be removed without --force, or None while it is live."""
        if self.holder_gone():
            return f"pid {self.pid} no longer runs on this host"
        if self.expired(now):
            return f"expired {self.expires}"
        return None

    def describe(self, now: datetime) -> str:
        if not self.readable:
            return (
                f"the lock object {self.name} is unreadable; if no prune is running, "
                "remove it with 'cleancut unlock --force'"
            )
        if self.holder_gone():
            return (
                f"stale lock {self.name} left by {self.holder}, created {self.created}: "
                "that process no longer runs; remove the lock with 'cleancut unlock'"
            )
        if self.expired(now):
            return (
                f"stale lock {self.name} left by {self.holder}, created {self.created}, "
                f"expired {self.expires}; if that process is gone, remove it with "
                "'cleancut unlock'"
            )
        return (
            f"the repository is locked by {self.holder} since {self.created} "
            f"(until {self.expires} unless renewed); try again later"
        )

    def to_bytes(self) -> bytes:
        doc = {
            "operation": self.operation,
            "host": self.host,
            "pid": self.pid,
            "user": self.user,
            "created": self.created,
            "expires": self.expires,
            "token": self.token,
            "boot_id": self.boot_id,
            "started": self.started,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Lock:
        try:
            doc = jsonparse.loads(data)
            lock = cls(
                name,
                str(doc["operation"]),
                str(doc["host"]),
                int(doc["pid"]),
                str(doc["user"]),
                str(doc["created"]),
                str(doc["expires"]),
                str(doc.get("token", "")),
                boot_id=str(doc.get("boot_id", "")),
                started=int(doc.get("started", 0)),
            )
            from_iso(lock.expires)
        except (ValueError, KeyError, TypeError):
            return cls(name, readable=False)
        return lock


def _boot_id() -> str:
    """This boot of this host (Linux), or "" where the system does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot, None if it is gone or a zombie
    (Linux /proc; None also where there is no /proc, and then `_process_runs` asks kill)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # killed, not yet reaped: it holds nothing any more
        return None
    return int(fields[19])


def _process_runs(pid: int, started: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    if not os.path.isdir("/proc/self"):
        return True
    ticks = _start_ticks(pid)
    return ticks is not None and (not started or ticks == started)


def read_locks(backend: Backend) -> list[Lock]:
    locks = []
    for info in backend.list(LOCKS_PREFIX):
        try:
            locks.append(Lock.from_bytes(info.name, backend.get(info.name)))
        except ObjectNotFound:
            continue  # released while we listed
    return locks


class HeldLock:
    """The prune lock while this process holds it: refreshed as the run goes on."""

    def __init__(self, backend: Backend, lock: Lock, ttl: float) -> None:
        self.backend = backend
        self.lock = lock
        self.ttl = ttl
        self.refreshed = clock.now()

    @classmethod
    def acquire(cls, backend: Backend, operation: str = "prune", ttl: float = LOCK_TTL) -> HeldLock:
        """Create `locks/prune` if absent (atomic); RepositoryLocked naming the holder if not.

        Refused on an append-only repository: a lock must be deleted after use."""
        refuse_if_append_only(backend, operation)
        for _ in range(3):
            now = clock.now()
            lock = Lock(
                LOCK_NAME,
                operation,
                socket.gethostname(),
                os.getpid(),
                getpass.getuser(),
                iso(now),
                iso(now + timedelta(seconds=ttl)),
                os.urandom(16).hex(),
                boot_id=_boot_id(),
                started=_start_ticks(os.getpid()) or 0,
            )
            if backend.put_if_absent(LOCK_NAME, lock.to_bytes()):
                return cls(backend, lock, ttl)
            try:
                existing = Lock.from_bytes(LOCK_NAME, backend.get(LOCK_NAME))
            except ObjectNotFound:
                continue  # released in between: try again
            raise RepositoryLocked(existing.describe(now))
        raise RepositoryLocked(f"could not take {LOCK_NAME}: it keeps changing hands")

    def _still_ours(self) -> None:
        try:
            current = Lock.from_bytes(LOCK_NAME, self.backend.get(LOCK_NAME))
        except ObjectNotFound:
            current = None
        if current is None or current.token != self.lock.token:
            raise RepositoryLocked(
                f"lost {LOCK_NAME} while pruning (removed by 'cleancut unlock --force'?); "
                "stopped before deleting anything more"
            )

    def refresh(self, force: bool = False) -> None:
        """Push the expiry forward (every third of the TTL), after checking it is still ours."""
        now = clock.now()
        if not force and (now - self.refreshed).total_seconds() < self.ttl / 3:
            return
        self._still_ours()
        self.lock.expires = iso(now + timedelta(seconds=self.ttl))
        self.backend.put(LOCK_NAME, self.lock.to_bytes())
        self.refreshed = now

    def check(self) -> None:
        """Before a deletion: the lock must still be ours."""
        self._still_ours()
        self.refresh()

    def release(self) -> None:
        try:
            current = Lock.from_bytes(LOCK_NAME, self.backend.get(LOCK_NAME))
        except ObjectNotFound:
            return
        if current.token == self.lock.token:
            self.backend.delete(LOCK_NAME)


@dataclass
class UnlockResult:
    removed: list[Lock] = field(default_factory=list)  # stale
    forced: list[Lock] = field(default_factory=list)  # live (or unreadable), removed by force
    kept: list[Lock] = field(default_factory=list)  # live, left in place


def remove_locks(backend: Backend, now: datetime, force: bool) -> UnlockResult:
    """Remove stale locks (expired, or whose holder provably no longer runs: same host,
    pid gone or host rebooted); with `force`, live and unreadable ones too."""
    result = UnlockResult()
    for lock in read_locks(backend):
        if lock.stale_reason(now) is not None:
            backend.delete(lock.name)
            result.removed.append(lock)
        elif force:
            backend.delete(lock.name)
            result.forced.append(lock)
        else:
            result.kept.append(lock)
    return result
