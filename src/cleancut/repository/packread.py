"""Reading many blobs pack by pack: the one place that knows how a reader's pack ranges
are cut, fetched, hinted ahead and verified.

A caller that needs many blobs (restore) groups them by pack and asks `coalesce` for
*ranges*: byte ranges read with one request, adjacent blobs joined, and blobs separated
by a gap small enough that reading it costs less than another request (after restic's
filerestorer). `PackReader.read` fetches one range and hands back each blob in it
decrypted, decompressed and verified against its ID (Repository.open_box), or the
error that names why it cannot be had (a missing pack, a failed read, damage): one
bad blob never hides its neighbours.

While ranges of one pack are read, a local repository's kernel is asked to read the
next few packs ahead (posix_fadvise: page cache, not this process's memory); an object
store gets no such hint, since its read-ahead would fetch whole packs that are read by
ranges anyway. How many ranges are read at once depends on the backend: a local disk
serves a few, an object store more, each request waiting on the network.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cleancut.backend.local import LocalBackend
from cleancut.errors import CleancutError, ObjectNotFound

from .cache import BlobLocation
from .pack import BlobEntry, pack_name
from .repository import Repository

RUN_MAX = 4 << 20  # bytes read with one request at most (a larger blob is read alone)
GAP_MAX = 256 << 10  # unneeded bytes between two needed blobs read rather than skipped
LOCAL_READERS = 4  # ranges read at once from a local repository
REMOTE_READERS = 8  # ... from an object store, where each request waits on the network
HINT_AHEAD = 4  # packs of a local repository the kernel is asked to read ahead
TREE_PACKS_AHEAD = 64  # tree packs asked for before a walk of a snapshot's trees


@dataclass(eq=False)
class PackRange:
    """A byte range of one pack read with one request, and the blobs in it by offset."""

    pack_id: str
    salt: bytes
    offset: int
    length: int
    entries: list[BlobEntry]


def coalesce(pack_id: str, salt: bytes, entries: Sequence[BlobEntry]) -> list[PackRange]:
    """A pack's needed blobs as ranges to read: neighbours joined across small gaps, no
    range longer than RUN_MAX unless one blob is."""
    ranges: list[PackRange] = []
    current: PackRange | None = None
    for entry in sorted(entries, key=lambda e: e.offset):
        if current is not None:
            gap = entry.offset - (current.offset + current.length)
            end = entry.offset + entry.length
            if 0 <= gap <= GAP_MAX and end - current.offset <= RUN_MAX:
                current.length = end - current.offset
                current.entries.append(entry)
                continue
        current = PackRange(pack_id, salt, entry.offset, entry.length, [entry])
        ranges.append(current)
    return ranges


class PackReader:
    """Reads the ranges of a plan; `packs` is the order their packs will be reached in
    (the read-ahead follows it)."""

    def __init__(self, repo: Repository, packs: Sequence[str] = ()) -> None:
        self.repo = repo
        self.local = isinstance(repo.backend, LocalBackend)
        self.packs = list(packs) if self.local else []
        self.position = {pack_id: i for i, pack_id in enumerate(self.packs)}
        self.hinted = 0
        self.lock = threading.Lock()

    @property
    def readers(self) -> int:
        """How many ranges to read at once on this backend."""
        return LOCAL_READERS if self.local else REMOTE_READERS

    def prefetch_trees(self) -> None:
        """Ask for the packs that hold trees before a snapshot's trees are walked: an
        object store then serves whole packs instead of one ranged GET per directory."""
        for pack_id in self.repo.tree_packs()[:TREE_PACKS_AHEAD]:
            self.repo.prefetch_pack(pack_id)

    def read(self, rng: PackRange) -> Iterator[tuple[BlobEntry, bytes | str]]:
        """Each blob of `rng`, in offset order, with its verified plaintext or a line
        saying why it cannot be had (a str)."""
        self._reached(rng.pack_id)
        try:
            box = memoryview(self.repo.backend.get_range(pack_name(rng.pack_id), rng.offset,
                                                         rng.length))  # fmt: skip
        except CleancutError as exc:
            missing = isinstance(exc, ObjectNotFound)
            for entry in rng.entries:
                what = f"blob {entry.id.hex()[:12]} in pack {rng.pack_id[:12]}"
                why = f"{what}: the pack is missing" if missing else f"{what}: {exc}"
                yield entry, why
            return
        for entry in rng.entries:
            start = entry.offset - rng.offset
            try:
                data = self.repo.open_box(
                    BlobLocation(rng.pack_id, rng.salt, entry), box[start : start + entry.length]
                )
            except CleancutError as exc:
                yield entry, str(exc)
                continue
            yield entry, data

    def _reached(self, pack_id: str) -> None:
        """A range of this pack is being read: hint the next HINT_AHEAD packs not yet
        hinted (each pack once)."""
        at = self.position.get(pack_id)
        if at is None:
            return
        with self.lock:
            start, end = self.hinted, min(at + 1 + HINT_AHEAD, len(self.packs))
            self.hinted = max(self.hinted, end)
        for pack in self.packs[start:end]:
            self.repo.prefetch_pack(pack)
