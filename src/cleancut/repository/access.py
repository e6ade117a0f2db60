"""What the engines may ask of a repository's storage, by name, so that none reaches into
its backend or its cache, nor derives paths from the cache's.

`EngineAccess` is a base of `Repository`: object names and sizes under a prefix, reads
and writes of packs, index segments, snapshot records and other objects (records,
journal batches), lookups in the cached index, the repository lock, the prune reserve,
the damage records, and the directory this host keeps for the repository.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cleancut.backend.appendonly import refuse_if_append_only
from cleancut.backend.base import Backend

from . import reserve
from .cache import BlobLocation, Cache
from .crypto import MasterKeys
from .damage import Damage, remember_damage, replace_damage
from .index import INDEX_PREFIX
from .locks import HeldLock, UnlockResult, remove_locks
from .pack import pack_name
from .snapshot import SNAPSHOTS_PREFIX


class EngineAccess:
    """The storage operations an engine needs; `Repository` sets the three attributes."""

    backend: Backend
    cache: Cache
    keys: MasterKeys

    @property
    def local_dir(self) -> Path:
        """This repository's directory on this host (its cache's): what an engine keeps
        locally beside the cache (journal catalog, replay staging, tick locks) goes here."""
        return self.cache.path.parent

    @property
    def cache_root(self) -> Path:
        """The directory holding every repository's local directory (<root>/<repository id>/):
        another repository opened from this process keeps its cache there too."""
        return self.local_dir.parent

    @property
    def location(self) -> str:
        """Where the repository lives, as the operator named it (for messages)."""
        return self.backend.location

    def refuse_if_append_only(self, what: str) -> None:
        """AppendOnly (exit 16) before `what`, a change that deletes, starts."""
        refuse_if_append_only(self.backend, what)

    def names(self, prefix: str) -> list[str]:
        """The names of the objects under `prefix` (the prefix taken off), sorted."""
        return sorted(info.name[len(prefix) :] for info in self.backend.list(prefix))

    def object_sizes(self, prefix: str) -> dict[str, int]:
        """Stored size of each object under `prefix`, by its last name component."""
        return {info.name.rsplit("/", 1)[-1]: info.size for info in self.backend.list(prefix)}

    def snapshot_ids(self) -> list[str]:
        """The snapshot records in the repository now (not the cache's catalog), sorted."""
        return self.names(SNAPSHOTS_PREFIX)

    def segment_ids(self) -> list[str]:
        """The index segments in the repository now, sorted."""
        return self.names(INDEX_PREFIX)

    def pack_sizes(self) -> dict[str, int]:
        """Stored size of every pack in the repository now, by pack id."""
        return self.object_sizes("data/")

    def read_object(self, name: str) -> bytes:
        """The stored bytes of one object (ObjectNotFound if absent)."""
        return self.backend.get(name)

    def write_object(self, name: str, data: bytes) -> None:
        self.backend.put(name, data)

    def delete_object(self, name: str) -> None:
        self.backend.delete(name)

    def has_object(self, name: str) -> bool:
        return self.backend.exists(name)

    def prefetch(self, name: str) -> None:
        """Tell the backend an object will be read soon (a remote one fetches it ahead)."""
        self.backend.prefetch(name)

    def prefetch_pack(self, pack_id: str) -> None:
        self.prefetch(pack_name(pack_id))

    @property
    def write_concurrency(self) -> int:
        """How many writes a backup keeps in flight on this repository's backend."""
        return max(1, self.backend.write_concurrency)

    def read_pack(self, pack_id: str) -> bytes:
        return self.backend.get(pack_name(pack_id))

    def write_pack(self, pack_id: str, data: bytes) -> None:
        self.backend.put(pack_name(pack_id), data)

    def delete_pack(self, pack_id: str) -> None:
        self.backend.delete(pack_name(pack_id))

    def has_pack(self, pack_id: str) -> bool:
        return self.backend.exists(pack_name(pack_id))

    def delete_segment(self, segment_id: str) -> None:
        """Delete an index segment object (the cache drops it at its next sync)."""
        self.backend.delete(INDEX_PREFIX + segment_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot record object (the cache drops it at its next sync)."""
        self.backend.delete(SNAPSHOTS_PREFIX + snapshot_id)

    def load_index(self) -> None:
        """Load the cached blob index into memory now (it is loaded at the first lookup
        otherwise): a caller may start this on a side thread while it does other work."""
        self.cache.load()

    def tree_packs(self) -> list[str]:
        """The packs (as the cached index knows them) that hold tree blobs."""
        return self.cache.tree_packs()

    def index_counts(self) -> dict[str, int]:
        """What the index (as cached) holds: blobs, packs, stored and raw bytes."""
        return self.cache.counts()

    def reread_index(self) -> None:
        """Drop the in-memory index so the next lookup reads the cache file again (after a
        sync, to see what another process took out of the index meanwhile)."""
        self.cache.reload()

    def find_blob(self, blob_id: bytes) -> BlobLocation | None:
        """Where the index (as cached) puts a blob; None if no segment lists it."""
        return self.cache.find_blob(blob_id)

    def acquire_lock(self, operation: str) -> HeldLock:
        """The repository lock (`locks/prune`) for `operation`; RepositoryLocked naming the
        holder if another run holds it, AppendOnly on an append-only repository."""
        return HeldLock.acquire(self.backend, operation)

    def remove_locks(self, now: datetime, force: bool) -> UnlockResult:
        """Remove stale locks (`force`: live and unreadable ones too); what was done."""
        return remove_locks(self.backend, now, force)

    def release_reserve(self) -> int:
        """Give back the reserve's space (on a full filesystem); its size, 0 if none."""
        return reserve.release(self.backend)

    def refill_reserve(self) -> int:
        """Make the reserve full size again if it fits (local repositories only); its size."""
        return reserve.refill(self.backend)

    def remember_damage(self, found: Damage) -> str | None:
        """Add what `check` found to the damage records; the new record's id, if written."""
        return remember_damage(self.backend, self.keys, found)

    def replace_damage(self, keep: Damage, old: Damage) -> None:
        """Rewrite the damage records as `keep` (what is still damaged of `old`)."""
        replace_damage(self.backend, self.keys, keep, old)
