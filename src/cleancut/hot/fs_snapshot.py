"""A filesystem snapshot as the whole of a hot backup's in-pause work.

Where the workspace is a btrfs subvolume, the pause needs no scan and no copy: one
read-only snapshot freezes the workspace as it is at the cut, and the staging pass
reads the snapshot after the agent runs again, then deletes it. The pause is then
flat in the number of files, the bytes changed and the size of databases.

The interface a filesystem plugs in through is SnapshotDriver: say why a source
cannot be snapshotted here (or that it can), name the volume a source is, take a
read-only snapshot into a directory, say which volume a snapshot found there was
taken of, and delete one. btrfs is the one driver (hot/btrfs.py); LVM thin and ZFS
would be two more (docs/hot-backup.md says how) and are not implemented.

Snapshots live in `fs-snapshots/` inside the staging directory (a directory that is
cleancut's own, marked), which must therefore be on the same filesystem. Before a
snapshot is taken, its name, driver and the source volume's id are written to
`fs-snapshot.json` beside it; the record is removed with the snapshot. A backup
killed in between leaves both, and the next run deletes the snapshot the record
names if, and only if, it is a read-only snapshot of that same volume. Anything else
in `fs-snapshots/`, or at that name, is never touched: it is not one we made.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut import jsonparse

from . import btrfs

PLACE = "fs-snapshots"
RECORD = "fs-snapshot.json"
_MAX_RECORD = 64 << 10
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SnapshotDriver(ABC):
    """One kind of filesystem snapshot. Every call gets open directory descriptors, never
    paths, so a source or staging swapped for a symlink cannot redirect it."""

    name: str  # recorded in the capture record and in fs-snapshot.json

    @abstractmethod
    def unusable(self, source: int, staging: int) -> str | None:
        """Why the source open at `source` cannot be snapshotted into the staging directory
        open at `staging`; None when it can."""

    @abstractmethod
    def volume(self, source: int) -> str:
        """A stable id of the volume the source is (what its snapshots say they are of)."""

    @abstractmethod
    def settle(self, source: int) -> None:
        """Just before the pause: whatever makes take() cheap (btrfs: write back what is
        dirty, which its snapshot would otherwise write inside the pause)."""

    @abstractmethod
    def take(self, source: int, place: int, name: str) -> None:
        """Inside the pause: a read-only snapshot of the source, as `name` in `place`."""

    def readable_at(self, source: Path, place: Path, name: str) -> Path:
        """Where the snapshot `name` is read after the pause: in `place` for btrfs; a
        filesystem that keeps snapshots elsewhere (ZFS: SOURCE/.zfs/snapshot/NAME) says so."""
        return place / name

    @abstractmethod
    def snapshot_of(self, place: int, name: str) -> str | None:
        """The volume id that `name` in `place` is a read-only snapshot of; None when it is
        missing or anything else."""

    @abstractmethod
    def remove(self, place: int, name: str) -> None:
        """Delete the snapshot `name` in `place`."""


class BtrfsDriver(SnapshotDriver):
    name = "btrfs"

    def unusable(self, source: int, staging: int) -> str | None:
        fsid = btrfs.fsid(source)
        if fsid is None:
            return "the source is not on btrfs"
        if not btrfs.is_subvolume_root(source):
            return (
                "the source is a directory inside a btrfs subvolume, not a subvolume of its "
                "own (`btrfs subvolume create` makes one)"
            )
        if btrfs.fsid(staging) != fsid:
            return (
                "the staging directory is not on the source's btrfs filesystem "
                "(--staging on it makes snapshots possible)"
            )
        return None

    def volume(self, source: int) -> str:
        return btrfs.subvolume(source).uuid.hex()

    def settle(self, source: int) -> None:
        btrfs.syncfs(source)

    def take(self, source: int, place: int, name: str) -> None:
        btrfs.snapshot(source, place, name)

    def snapshot_of(self, place: int, name: str) -> str | None:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=place)
        except OSError:
            return None
        try:
            if not btrfs.is_subvolume_root(fd):
                return None
            found = btrfs.subvolume(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        return found.parent_uuid.hex() if found.read_only else None

    def remove(self, place: int, name: str) -> None:
        btrfs.delete(place, name)


DRIVERS: tuple[SnapshotDriver, ...] = (BtrfsDriver(),)


@dataclass
class Plan:
    """Which capture strategy a hot backup uses, and why: the capture record's
    `strategy`. `driver` is None when the staging scan (no snapshot) runs."""

    driver: SnapshotDriver | None
    why: str
    notes: list[str] = field(default_factory=list)  # leftovers removed or left alone

    def record(self) -> dict[str, Any]:
        name = f"{self.driver.name}-snapshot" if self.driver else "staging-scan"
        return {"capture": name, "capture_why": self.why, "notes": list(self.notes)}


class Snapshotter:
    """One snapshot's life: open() before the pause, take() inside it, `path` to read from
    after it, release() once staged. A context manager once open: release() and closing
    always run."""

    def __init__(self, plan: Plan, source: Path, staging: Path) -> None:
        assert plan.driver is not None
        self.driver = plan.driver
        self.source = source
        self.staging = staging
        self.name = f"snap-{secrets.token_hex(8)}"
        self.taken_ns: int | None = None  # wall clock just before the snapshot
        self._released = False
        self._source_fd = -1
        self._place_fd = -1

    @property
    def path(self) -> Path:
        """Where staging reads the snapshot."""
        return self.driver.readable_at(self.source, self.staging / PLACE, self.name)

    def __enter__(self) -> Snapshotter:
        return self

    def open(self) -> None:
        """Outside the pause: open what take() needs and record the name about to be used.
        OSError when that fails (nothing is left behind then)."""
        self._source_fd = os.open(self.source, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            self._place_fd = _open_place(self.staging)
            _write_record(self.staging, {
                "driver": self.driver.name,
                "name": self.name,
                "volume": self.driver.volume(self._source_fd),
            })
            self.driver.settle(self._source_fd)
        except BaseException:
            self._close()
            raise

    def take(self) -> None:
        """Inside the pause: the snapshot, and nothing else."""
        taken = time.time_ns()  # before: a copy's data is from this instant or earlier
        self.driver.take(self._source_fd, self._place_fd, self.name)
        self.taken_ns = taken

    def release(self) -> str | None:
        """Delete the snapshot and its record; a warning when it could not be deleted (the
        record stays, and the next run tries again). Once: later calls do nothing."""
        if self._released:
            return None
        self._released = True
        warning = None
        if self.taken_ns is not None:
            try:
                self.driver.remove(self._place_fd, self.name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                warning = f"could not delete snapshot {self.path}: {exc.strerror}; next run will"
        if warning is None:
            _remove_record(self.staging)
        return warning

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        finally:
            self._close()

    def _close(self) -> None:
        for fd in (self._source_fd, self._place_fd):
            if fd >= 0:
                os.close(fd)
        self._source_fd = self._place_fd = -1


def plan(source: Path, staging: Path) -> Plan:
    """Choose the strategy for a hot backup of `source` staged in `staging` (a directory
    already claimed as ours), after removing a snapshot an interrupted run left."""
    try:
        return _plan(source, staging)
    except OSError as exc:
        return Plan(None, f"cannot look for snapshots in {staging} ({exc.strerror or exc})")


def _plan(source: Path, staging: Path) -> Plan:
    try:
        source_fd = os.open(source, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError as exc:
        return Plan(None, f"cannot open the source ({exc.strerror})")
    try:
        notes, blocked = _clean_leftover(staging)
        if blocked:
            return Plan(None, blocked, notes)
        staging_fd = os.open(staging, _DIR_FLAGS)
        try:
            reasons = []
            for driver in DRIVERS:
                why = driver.unusable(source_fd, staging_fd)
                if why is None:
                    return Plan(driver, f"the source is a {driver.name} subvolume", notes)
                reasons.append(why)
            return Plan(None, "; ".join(reasons), notes)
        finally:
            os.close(staging_fd)
    finally:
        os.close(source_fd)


def _clean_leftover(staging: Path) -> tuple[list[str], str | None]:
    """Delete the snapshot an interrupted run recorded, if it is one of ours. Returns
    notes for the capture record, and a reason not to snapshot this time (a leftover
    that cannot be deleted: another would pile up beside it)."""
    record = _read_record(staging)
    if record is None:
        return [], None
    try:
        place = os.open(staging / PLACE, _DIR_FLAGS)
    except OSError:
        _remove_record(staging)  # no place, so no snapshot was ever taken there
        return [f"an interrupted run recorded a snapshot in {PLACE}/ but never took it"], None
    try:
        return _clean_in(staging, place, record)
    finally:
        os.close(place)


def _clean_in(staging: Path, place: int, record: dict[str, Any]) -> tuple[list[str], str | None]:
    name = record.get("name")
    driver = next((d for d in DRIVERS if d.name == record.get("driver")), None)
    if driver is None or not isinstance(name, str) or not name.startswith("snap-"):
        _remove_record(staging)
        return [f"{RECORD} named no snapshot of ours: removed"], None
    rel = f"{PLACE}/{name}"
    of = driver.snapshot_of(place, name)
    if of is None:
        if os.path.lexists(staging / rel):
            note = f"{rel} is not a read-only snapshot cleancut took: left alone"
        else:
            note = f"an interrupted run recorded {rel} but never took it"
        _remove_record(staging)
        return [note], None
    if of != record.get("volume"):
        _remove_record(staging)
        return [f"{rel} is a snapshot of another volume, not ours: left alone"], None
    try:
        driver.remove(place, name)
    except OSError as exc:
        why = f"a leftover snapshot {staging / rel} cannot be deleted ({exc.strerror})"
        return [why], why
    _remove_record(staging)
    return [f"removed {rel}, a snapshot left by an interrupted run"], None


def _open_place(staging: Path) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(staging / PLACE, 0o700)
    return os.open(staging / PLACE, _DIR_FLAGS)


def _read_record(staging: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(staging / RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return {}
        raise
    try:
        data = os.read(fd, _MAX_RECORD)
    finally:
        os.close(fd)
    try:
        record = jsonparse.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(staging: Path, record: dict[str, Any]) -> None:
    """Durable before the snapshot exists: a crash then leaves the record to find it by."""
    path = staging / RECORD
    tmp = staging / f"{RECORD}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, json.dumps(record).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(staging, _DIR_FLAGS)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_record(staging: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging / RECORD)
