"""A repository: backend + config + master keys + local cache.

Opening one reads the config, unwraps the master keys with a passphrase and
brings the SQLite cache up to date with the index segments and snapshot
records that exist in the backend (so a deleted or stale cache heals itself).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from cleancut.backend.appendonly import refuse_if_append_only
from cleancut.backend.base import Backend
from cleancut.errors import (
    CleancutError,
    IntegrityError,
    NotARepository,
    ObjectNotFound,
    UsageError,
)
from cleancut.repository import reserve

from .access import EngineAccess
from .cache import BlobLocation, Cache
from .compress import NEW_REPOSITORY_LEVEL, decompress
from .config import DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE, ChunkerParams, RepoConfig
from .crypto import MasterKeys, Sealer, content_hash
from .damage import Damage, load_damage
from .index import INDEX_PREFIX, IndexSegment, PackRecord
from .keys import KEYS_PREFIX, KdfParams, KeyRing
from .objects import open_json, open_object, seal_json, seal_object
from .pack import blob_aad, pack_name, pack_sealer, parse_header
from .snapshot import RECORD_KIND, SNAPSHOTS_PREFIX, Snapshot, record_hash, resolve

CONFIG = "config"
INDEX_KIND = "index"


def init_repository(
    backend: Backend,
    passphrase: str,
    chunker: ChunkerParams | None = None,
    kdf: KdfParams | None = None,
    pack_size: int = DEFAULT_PACK_SIZE,
    compression_level: int = NEW_REPOSITORY_LEVEL,
    profile: str = "standard",
) -> RepoConfig:
    """Create the config and the first key slot; refuses an existing repository."""
    if not MIN_PACK_SIZE <= pack_size <= MAX_PACK_SIZE:
        raise UsageError("pack size must be between 1 MiB and 1 GiB")
    config = RepoConfig.new(chunker or ChunkerParams(), pack_size, compression_level, profile)
    if backend.exists(CONFIG) or any(True for _ in backend.list(KEYS_PREFIX)):
        raise CleancutError(f"a repository already exists at {backend.location}")
    keys = MasterKeys.generate()
    KeyRing(backend, config.id).add(keys, passphrase, kdf, config.to_bytes())
    if not backend.put_if_absent(CONFIG, config.to_bytes()):
        raise CleancutError(f"a repository already exists at {backend.location}")
    reserve.refill(backend)  # room for prune on a full filesystem (repository/reserve.py)
    return config


def read_config(backend: Backend) -> RepoConfig:
    try:
        data = backend.get(CONFIG)
    except ObjectNotFound as exc:
        raise NotARepository(
            f"{backend.location} is not a cleancut repository (no config)"
        ) from exc
    except IsADirectoryError as exc:
        raise NotARepository(f"{backend.location} is not a cleancut repository") from exc
    return RepoConfig.from_bytes(data)


class Repository(EngineAccess):
    """An open repository. What the engines may ask of its storage is EngineAccess's."""

    def __init__(
        self, backend: Backend, config: RepoConfig, keys: MasterKeys, cache: Cache
    ) -> None:
        self.backend = backend
        self.config = config
        self.keys = keys
        self.cache = cache
        self._snapshots: list[Snapshot] | None = None
        self._blob_cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._blob_cache_bytes = 0
        self._lock = threading.Lock()
        self.warnings: list[str] = []  # damaged objects skipped while syncing the cache
        self._sealers: dict[bytes, Sealer] = {}
        self.slot_id = ""  # the key slot this process opened the repository with
        self.damage = Damage()  # what `check` found damaged (damaged/), read at each sync

    @classmethod
    def open(
        cls,
        backend: Backend,
        passphrase: str,
        cache_root: Path | None = None,
        sync: bool = True,
        config: RepoConfig | None = None,
    ) -> Repository:
        """`config`: the repository's config if the caller already read it (read once)."""
        if config is None:
            config = read_config(backend)
        keys, slot_id = KeyRing(backend, config.id).open(passphrase)
        repo = cls(backend, config, keys, Cache(config.id, cache_root))
        repo.slot_id = slot_id
        if sync:
            repo.sync_cache()
        return repo

    def close(self) -> None:
        self.cache.close()

    def use_backend(self, backend: Backend) -> None:
        """Go through `backend` from now on: the same store wrapped for this run (an
        upload cap settled after the repository was opened, settings/caps.py). Another
        location is refused: the config, keys and cache here belong to this one."""
        if backend.location != self.backend.location:
            raise ValueError(
                f"{backend.location} is not this repository's store ({self.backend.location})"
            )
        self.backend = backend

    @property
    def keyring(self) -> KeyRing:
        return KeyRing(self.backend, self.config.id)

    # --- cache ----------------------------------------------------------

    def sync_cache(self) -> dict[str, int]:
        """Load what the cache lacks, drop what the repository no longer has.

        A prune or forget elsewhere may delete a segment between the listing and its
        read (it writes the replacement first): then the listing is taken again."""
        for _ in range(4):
            try:
                return self._sync_cache()
            except ObjectNotFound:
                continue
        return self._sync_cache()

    def _sync_cache(self) -> dict[str, int]:
        present = {info.name[len(INDEX_PREFIX) :] for info in self.backend.list(INDEX_PREFIX)}
        cached = self.cache.segment_ids()
        gone = cached - present
        if gone:
            # A segment vanished (prune): a blob may have moved, so rebuild the blob index whole.
            self.cache.forget_segments(cached)
            cached = set()
        added = 0
        self.warnings = []
        for sid in sorted(present - cached):
            try:
                segment = self.load_segment(sid)
            except IntegrityError as exc:
                # Never trusted, never cached; `check` reports it, `repair index` replaces it.
                self.warnings.append(f"ignored {exc}")
                continue
            self.cache.add_segment(sid, segment)
            added += 1
        snap_present = {
            info.name[len(SNAPSHOTS_PREFIX) :] for info in self.backend.list(SNAPSHOTS_PREFIX)
        }
        snap_cached = self.cache.snapshot_ids()
        self.cache.forget_snapshots(snap_cached - snap_present)
        for sid in sorted(snap_present - snap_cached):
            try:
                record = open_json(
                    self.keys, RECORD_KIND, sid, self.backend.get(SNAPSHOTS_PREFIX + sid)
                )
            except ObjectNotFound:
                continue  # forgotten between the listing and the read
            except IntegrityError as exc:
                self.warnings.append(f"ignored {exc}")
                continue
            self.cache.add_snapshot(sid, record)
        self._snapshots = None
        self.load_damage()
        if self.cache.warning:
            self.warnings.append(self.cache.warning)
        return {"segments_loaded": added, "segments_dropped": len(gone)}

    def load_damage(self) -> Damage:
        """Read the damage registry; a blob known only in damaged places is then absent."""
        self.damage = load_damage(self.backend, self.keys)
        for oid, why in self.damage.unreadable:
            self.warnings.append(f"ignored damage record {oid[:12]}: {why}")
        self.cache.set_damaged(self.damage.pairs())
        return self.damage

    def rebuild_cache(self) -> dict[str, int]:
        self.cache.forget_segments(self.cache.segment_ids())
        self.cache.forget_snapshots(self.cache.snapshot_ids())
        return self.sync_cache()

    def reindex_from_packs(self) -> dict[str, int]:
        """Index every pack that no readable segment covers, from the pack's own header.

        Damaged segments are then redundant (whatever they indexed is indexed
        again from the packs themselves) and are removed.
        """
        refuse_if_append_only(self.backend, "repair index (it removes damaged segments)")
        damaged = []
        covered: set[str] = set()
        for info in self.backend.list(INDEX_PREFIX):
            sid = info.name[len(INDEX_PREFIX) :]
            try:
                covered |= {p.pack_id for p in self.load_segment(sid).packs}
            except IntegrityError:
                damaged.append(sid)
        records: list[PackRecord] = []
        not_indexed: list[str] = []
        known_damaged = self.load_damage().packs
        for info in self.backend.list("data/"):
            pack_id = info.name.rsplit("/", 1)[-1]
            if pack_id in covered:
                continue
            if pack_id in known_damaged:
                not_indexed.append(
                    f"not indexed: pack {pack_id[:12]} is recorded as damaged "
                    "('cleancut repair packs' replaces it)"
                )
                continue
            data = self.backend.get(info.name)
            try:
                if content_hash(data) != pack_id:
                    raise IntegrityError(f"pack {pack_id[:12]} does not match its name")
                salt, entries = parse_header(self.keys, data, f"pack {pack_id[:12]}")
            except IntegrityError as exc:
                not_indexed.append(f"not indexed: {exc}")
                continue
            records.append(PackRecord(pack_id, salt, len(data), entries))
        if records:
            self.write_segment(IndexSegment(records))
        for sid in damaged:
            self.backend.delete(INDEX_PREFIX + sid)
        result = self.rebuild_cache()
        self.warnings += not_indexed
        result.update(
            packs_reindexed=len(records),
            damaged_segments_removed=len(damaged),
            unreadable_packs=len(not_indexed),
        )
        return result

    # --- index segments -------------------------------------------------

    def load_segment(self, segment_id: str) -> IndexSegment:
        stored = self.backend.get(INDEX_PREFIX + segment_id)
        plain = open_object(self.keys, INDEX_KIND, segment_id, stored)
        return IndexSegment.decode(plain, f"index segment {segment_id[:12]}")

    def write_segment(self, segment: IndexSegment) -> str:
        segment_id, stored = seal_object(self.keys, INDEX_KIND, segment.encode())
        self.backend.put(INDEX_PREFIX + segment_id, stored)
        self.cache.add_segment(segment_id, segment)
        return segment_id

    # --- blobs ----------------------------------------------------------

    def has_blob(self, blob_id: bytes) -> bool:
        return self.cache.has_blob(blob_id)

    def locate(self, blob_id: bytes) -> BlobLocation:
        loc = self.cache.find_blob(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} is in no index segment (missing data)")
        return loc

    def load_blob(self, blob_id: bytes, expected_type: int | None = None) -> bytes:
        """Fetch, decrypt, decompress and verify one blob against its ID."""
        loc = self.locate(blob_id)
        entry = loc.entry
        if expected_type is not None and entry.type != expected_type:
            raise IntegrityError(f"blob {blob_id.hex()[:12]} has the wrong type")
        what = f"blob {blob_id.hex()[:12]} in pack {loc.pack_id[:12]}"
        try:
            box = self.backend.get_range(pack_name(loc.pack_id), entry.offset, entry.length)
        except ObjectNotFound as exc:
            raise IntegrityError(f"{what}: the pack is missing") from exc
        return self.open_box(loc, box)

    def open_box(self, loc: BlobLocation, box: bytes | memoryview) -> bytes:
        """Decrypt, decompress and verify a blob's stored bytes, read from its pack at
        `loc` (by load_blob, or by restore reading many blobs with one request)."""
        entry = loc.entry
        blob_id = entry.id
        what = f"blob {blob_id.hex()[:12]} in pack {loc.pack_id[:12]}"
        if len(box) != entry.length:
            raise IntegrityError(f"{what}: the pack is truncated")
        plain = decompress(
            self._sealer(loc.salt).open(box, blob_aad(entry.type, blob_id), what),
            entry.raw_length,
        )
        if len(plain) != entry.raw_length or self.keys.blob_id(plain) != blob_id:
            raise IntegrityError(f"{what} does not hash to its ID")
        return plain

    def drop_tree_cache(self) -> None:
        """Forget the trees kept for walks (restore, once its plan is made, needs none)."""
        with self._lock:
            self._blob_cache.clear()
            self._blob_cache_bytes = 0

    def _sealer(self, salt: bytes) -> Sealer:
        """Pack keys, derived once per pack (HKDF costs more than decrypting a small blob)."""
        sealer = self._sealers.get(salt)
        if sealer is None:
            if len(self._sealers) > 4096:
                self._sealers.clear()
            sealer = self._sealers[salt] = pack_sealer(self.keys, salt)
        return sealer

    def load_tree_blob(self, tree_id: str) -> bytes:
        """Tree blobs are read often during a walk: keep a bounded LRU of them."""
        key = bytes.fromhex(tree_id)
        with self._lock:
            hit = self._blob_cache.get(key)
            if hit is not None:
                self._blob_cache.move_to_end(key)
                return hit
        data = self.load_blob(key, expected_type=1)
        with self._lock:
            self._blob_cache[key] = data
            self._blob_cache_bytes += len(data)
            while self._blob_cache_bytes > 64 << 20 and self._blob_cache:
                _, old = self._blob_cache.popitem(last=False)
                self._blob_cache_bytes -= len(old)
        return data

    # --- snapshots ------------------------------------------------------

    def snapshots(self) -> list[Snapshot]:
        if self._snapshots is None:
            self._snapshots = [
                Snapshot.from_record(sid, record) for sid, record in self.cache.snapshot_records()
            ]
        return list(self._snapshots)

    def write_snapshot(self, snapshot: Snapshot) -> str:
        record = snapshot.to_record()
        snapshot_id, stored = seal_json(self.keys, RECORD_KIND, record)
        self.backend.put(SNAPSHOTS_PREFIX + snapshot_id, stored)
        self.cache.add_snapshot(snapshot_id, record)
        snapshot.id = snapshot_id
        snapshot.record_hash = record_hash(record)
        self._snapshots = None
        return snapshot_id

    def find_snapshot(self, ref: str, name: str | None = None) -> Snapshot:
        """Resolve an id, prefix or "latest" in the catalog, then read the record itself.

        The cache only finds it; what a command acts on is authenticated again from
        the repository, so a record damaged after it was cached is refused.
        """
        return self.load_snapshot(resolve(self.snapshots(), ref, name).id)

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        """Read a record from the backend itself (not the cache), authenticating it."""
        stored = self.backend.get(SNAPSHOTS_PREFIX + snapshot_id)
        return Snapshot.from_record(
            snapshot_id, open_json(self.keys, RECORD_KIND, snapshot_id, stored)
        )
