"""The restore plan: which ranges of which packs to read, and where each blob goes.

Restore reads each pack once, not each file's blobs one by one (after restic's
filerestorer): every file's content list is looked up in the index, the blobs
are grouped by pack, and each pack's needed blobs are cut into *runs*, byte
ranges read with one request (repository/packread.py: adjacent blobs, and blobs
separated by a gap small enough that reading it costs less than another
request). A blob is read,
decrypted and verified once and written to every offset of every file that
holds it, however many files share it. Packs come in the order files first need
them, so a file's blobs tend to arrive together and few files are in progress
at once.

Files whose blobs cannot all be located, or whose blob sizes do not add up to
the recorded size, are damaged before anything is read; they are never planned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cleancut.repository.cache import Cache
from cleancut.repository.pack import BlobEntry
from cleancut.repository.packread import PackRange, coalesce
from cleancut.repository.tree import Node


@dataclass(eq=False)
class FileJob:
    """One regular file to restore, and its progress (guarded by `lock`)."""

    dir_rel: str
    rel: str
    node: Node
    remaining: int = 0  # blob writes still to come (a blob at two offsets counts twice)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fd: int = -1  # the temporary file, while open
    tmp: str = ""  # its name in the directory, once created
    identity: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the temporary file
    owned: bool = False  # the temporary file was created with the recorded owner and group
    failure: str = ""  # why the file will not be renamed into place, once known
    damaged: bool = False  # the failure is damaged data (not a write error)
    done: bool = False  # renamed into place, or removed


@dataclass(eq=False)
class PlannedBlob:
    entry: BlobEntry
    targets: list[tuple[FileJob, list[int]]] = field(default_factory=list)  # file, offsets


@dataclass(eq=False)
class Run:
    """A byte range of one pack read with one request (packread.py cuts it), and where
    each of its blobs goes."""

    range: PackRange
    blobs: dict[bytes, PlannedBlob]  # blob id -> its targets

    @property
    def pack_id(self) -> str:
        return self.range.pack_id


@dataclass
class Plan:
    runs: list[Run]  # packs in first-need order, each pack's runs by offset
    empty: list[FileJob]  # files with no content: nothing to read
    unplanned: list[tuple[FileJob, str]]  # damaged before reading: (file, why)
    packs: list[str]  # pack ids in the order of `runs`


def _locate(cache: Cache, job: FileJob) -> list[tuple[str, bytes, BlobEntry]] | str:
    """The location of each of a file's blobs, or why the file cannot be restored."""
    found = []
    total = 0
    for blob_hex in job.node.content:
        blob_id = bytes.fromhex(blob_hex)
        loc = cache.find_blob(blob_id)
        if loc is None:
            return f"blob {blob_hex[:12]} is in no index segment (missing data)"
        found.append((loc.pack_id, loc.salt, loc.entry))
        total += loc.entry.raw_length
    if total != job.node.size:
        return f"size {total} differs from the recorded {job.node.size}"
    return found


def make_plan(cache: Cache, jobs: list[FileJob]) -> Plan:
    by_pack: dict[str, dict[bytes, PlannedBlob]] = {}  # insertion order: first need
    salts: dict[str, bytes] = {}
    empty: list[FileJob] = []
    unplanned: list[tuple[FileJob, str]] = []
    for job in jobs:
        located = _locate(cache, job)
        if isinstance(located, str):
            unplanned.append((job, located))
            continue
        if not located:
            empty.append(job)
            continue
        job.remaining = len(located)
        offsets: dict[bytes, list[int]] = {}  # blob id -> this file's offsets of it
        where: dict[bytes, tuple[str, BlobEntry]] = {}
        position = 0
        for pack_id, salt, entry in located:
            offsets.setdefault(entry.id, []).append(position)
            where[entry.id] = (pack_id, entry)
            salts[pack_id] = salt
            position += entry.raw_length
        for blob_id, at in offsets.items():
            pack_id, entry = where[blob_id]
            blobs = by_pack.setdefault(pack_id, {})
            planned = blobs.get(blob_id)
            if planned is None:
                planned = blobs[blob_id] = PlannedBlob(entry)
            planned.targets.append((job, at))
    runs: list[Run] = []
    for pack_id, blobs in by_pack.items():
        runs.extend(_cut_runs(pack_id, salts[pack_id], blobs))
    return Plan(runs, empty, unplanned, list(by_pack))


def _cut_runs(pack_id: str, salt: bytes, blobs: dict[bytes, PlannedBlob]) -> list[Run]:
    """A pack's needed blobs as ranges to read (packread.coalesce), each with its
    blobs' targets."""
    ranges = coalesce(pack_id, salt, [planned.entry for planned in blobs.values()])
    return [Run(rng, {entry.id: blobs[entry.id] for entry in rng.entries}) for rng in ranges]
