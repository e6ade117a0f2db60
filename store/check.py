"""Check: is every snapshot restorable from what the repository holds?

Structure: every index segment and snapshot record decrypts and
authenticates; every index entry points inside an existing pack of the
recorded size; every tree decodes; every blob a snapshot references is
indexed. With read_data, packs are read in full: their names must match their
hashes, and every blob must decrypt and hash to its ID. Damage is reported by
pack, with the snapshots that depend on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .chain import find_forks, load_delta, older_than_parent, verified_chain
from .compress import decompress
from .crypto import Sealer, content_hash
from .errors import ChainBroken, CleancutError
from .index import PackRecord
from .pack import BlobEntry, blob_aad, pack_name, pack_sealer, parse_header
from .repository import INDEX_PREFIX, Repository
from .snapshot import SNAPSHOTS_PREFIX, Snapshot
from .tree import DIR, FILE
from .walk import load_tree


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged_packs: list[str] = field(default_factory=list)
    damaged_snapshots: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "notes": self.notes,
            "damaged_packs": self.damaged_packs,
            "damaged_snapshots": self.damaged_snapshots,
            "snapshots": self.snapshots,
            "packs": self.packs,
            "packs_read": self.packs_read,
            "blobs_read": self.blobs_read,
        }


class Checker:
    def __init__(self, repo: Repository, on_pack: Callable[[int], None] | None = None) -> None:
        self.repo = repo
        self.report = CheckReport()
        self.on_pack = on_pack
        self.index: dict[str, PackRecord] = {}
        self.blob_pack: dict[bytes, str] = {}

    def run(self, read_data_percent: float = 0.0) -> CheckReport:
        self._check_index()
        snapshots = self._check_snapshots()
        self.report.notes.extend(fork.describe() for fork in find_forks(snapshots))
        self.report.notes.extend(older_than_parent(snapshots))
        refs = self._check_trees(snapshots)
        if read_data_percent > 0:
            self._read_data(read_data_percent)
        bad_blobs = {b for p in self.report.damaged_packs for b in self._blobs_of(p)}
        bad_blobs |= refs.missing
        if bad_blobs:
            self._blame(snapshots, bad_blobs)
        return self.report

    def _blobs_of(self, pack_id: str) -> set[bytes]:
        record = self.index.get(pack_id)
        return {e.id for e in record.entries} if record else set()

    def _check_index(self) -> None:
        sizes = {
            info.name.rsplit("/", 1)[-1]: info.size for info in self.repo.backend.list("data/")
        }
        for info in self.repo.backend.list(INDEX_PREFIX):
            sid = info.name[len(INDEX_PREFIX) :]
            try:
                segment = self.repo.load_segment(sid)
            except CleancutError as exc:
                self.report.errors.append(f"index segment {sid[:12]}: {exc}")
                continue
            for record in segment.packs:
                self.index[record.pack_id] = record
                for e in record.entries:
                    self.blob_pack.setdefault(e.id, record.pack_id)
        self.report.packs = len(self.index)
        for pack_id, record in self.index.items():
            size = sizes.get(pack_id)
            if size is None:
                self.report.errors.append(f"pack {pack_id[:12]} is indexed but missing")
                self.report.damaged_packs.append(pack_id)
            elif size != record.size or any(e.offset + e.length > size for e in record.entries):
                self.report.errors.append(
                    f"pack {pack_id[:12]} is {size} bytes, the index says {record.size} "
                    "(truncated?)"
                )
                self.report.damaged_packs.append(pack_id)
        unindexed = set(sizes) - set(self.index)
        if unindexed:
            self.report.notes.append(
                f"{len(unindexed)} pack(s) are not indexed: left by an interrupted backup or "
                "marked for deletion by prune; a snapshot that needed one is reported above"
            )

    def _check_snapshots(self) -> list[Snapshot]:
        good = []
        for info in self.repo.backend.list(SNAPSHOTS_PREFIX):
            sid = info.name[len(SNAPSHOTS_PREFIX) :]
            try:
                good.append(self.repo.load_snapshot(sid))
            except CleancutError as exc:
                self.report.errors.append(f"snapshot {sid[:12]}: {exc}")
                self.report.damaged_snapshots.append(sid)
        self.report.snapshots = len(good)
        return good

    def _check_trees(self, snapshots: list[Snapshot]) -> _Refs:
        refs = _Refs()
        for snap in snapshots:
            where = f"snapshot {snap.id[:12]}"
            if snap.is_full:
                self._check_tree(snap.tree, refs, where)
                continue
            try:
                verified_chain(self.repo, snap)
            except ChainBroken as exc:
                if str(exc) not in self.report.errors:
                    self.report.errors.append(str(exc))
                self._mark_damaged(snap, "depends on a broken chain")
                continue
            self._check_delta(snap, refs, where)
        return refs

    def _check_delta(self, snap: Snapshot, refs: _Refs, where: str) -> None:
        did = bytes.fromhex(snap.delta or "00")
        if did not in self.blob_pack:
            self.report.errors.append(f"{where}: its delta manifest is in no index segment")
            refs.missing.add(did)
            return
        try:
            delta = load_delta(self.repo, snap)
        except CleancutError as exc:
            self.report.errors.append(f"{where}: {exc}")
            refs.missing.add(did)
            return
        for path, node in delta.changed.items():
            self._require_indexed(node.content, refs, where, path)

    def _require_indexed(self, blobs: list[str], refs: _Refs, where: str, path: str) -> None:
        """Name each blob of a file that no index segment lists."""
        for blob_hex in blobs:
            bid = bytes.fromhex(blob_hex)
            if bid not in self.blob_pack and bid not in refs.missing:
                refs.missing.add(bid)
                self.report.errors.append(
                    f"{where}: blob {blob_hex[:12]} of {path!r} is in no index segment"
                )

    def _mark_damaged(self, snap: Snapshot, why: str) -> None:
        if snap.id not in self.report.damaged_snapshots:
            self.report.damaged_snapshots.append(snap.id)
            self.report.errors.append(f"snapshot {snap.id[:12]} ({snap.name}) {why}")

    def _check_tree(self, tree_id: str, refs: _Refs, where: str) -> None:
        if tree_id in refs.trees:
            return
        refs.trees.add(tree_id)
        tid = bytes.fromhex(tree_id)
        if tid not in self.blob_pack:
            self.report.errors.append(f"{where}: tree {tree_id[:12]} is in no index segment")
            refs.missing.add(tid)
            return
        try:
            nodes = load_tree(self.repo, tree_id)
        except CleancutError as exc:
            self.report.errors.append(f"{where}: {exc}")
            refs.missing.add(tid)
            return
        for node in nodes:
            if node.type == DIR and node.subtree:
                self._check_tree(node.subtree, refs, where)
            elif node.type == FILE:
                self._require_indexed(node.content, refs, where, node.name)

    def _read_data(self, percent: float) -> None:
        pack_ids = sorted(self.index)
        if percent < 100:
            k = max(1, round(len(pack_ids) * percent / 100)) if pack_ids else 0
            pack_ids = sorted(random.sample(pack_ids, k))
        damaged = set(self.report.damaged_packs)
        for pack_id in pack_ids:
            if pack_id in damaged:
                continue
            problem = self._read_pack(pack_id)
            self.report.packs_read += 1
            if problem:
                self.report.errors.append(f"pack {pack_id[:12]}: {problem}")
                self.report.damaged_packs.append(pack_id)
            if self.on_pack:
                self.on_pack(self.index[pack_id].size)

    def _read_pack(self, pack_id: str) -> str | None:
        try:
            data = self.repo.backend.get(pack_name(pack_id))
        except CleancutError as exc:
            return str(exc)
        if content_hash(data) != pack_id:
            problem = "content does not match its name (damaged)"
            # Go on: name the blobs that are damaged, and keep the report useful.
            self._read_blobs(pack_id, data)
            return problem
        try:
            _salt, entries = parse_header(self.repo.keys, data, f"pack {pack_id[:12]}")
        except CleancutError as exc:
            return str(exc)
        if {e.id for e in entries} != {e.id for e in self.index[pack_id].entries}:
            return "its header and the index disagree on which blobs it holds"
        return self._read_blobs(pack_id, data)

    def _read_blobs(self, pack_id: str, data: bytes) -> str | None:
        record = self.index[pack_id]
        sealer = pack_sealer(self.repo.keys, record.salt)
        bad = 0
        for e in record.entries:
            self.report.blobs_read += 1
            if not self._blob_ok(sealer, data, e):
                bad += 1
        return f"{bad} of {len(record.entries)} blobs are damaged" if bad else None

    def _blob_ok(self, sealer: Sealer, data: bytes, e: BlobEntry) -> bool:
        try:
            box = memoryview(data)[e.offset : e.offset + e.length]
            plain = decompress(sealer.open(box, blob_aad(e.type, e.id), "blob"), e.raw_length)
        except CleancutError:
            return False
        return len(plain) == e.raw_length and self.repo.keys.blob_id(plain) == e.id

    def _blame(self, snapshots: list[Snapshot], bad: set[bytes]) -> None:
        """Name every snapshot that references a damaged or missing blob."""
        memo: dict[str, bool] = {}

        def uses_bad(tree_id: str) -> bool:
            if tree_id in memo:
                return memo[tree_id]
            tid = bytes.fromhex(tree_id)
            if tid in bad:
                memo[tree_id] = True
                return True
            try:
                nodes = load_tree(self.repo, tree_id)
            except CleancutError:
                memo[tree_id] = True
                return True
            hit = False
            for node in nodes:
                if (node.type == DIR and node.subtree and uses_bad(node.subtree)) or (
                    node.type == FILE and any(bytes.fromhex(b) in bad for b in node.content)
                ):
                    hit = True
                    break
            memo[tree_id] = hit
            return hit

        by_id = {snap.id: snap for snap in snapshots}
        snap_memo: dict[str, bool] = {}

        def snapshot_uses_bad(snap: Snapshot) -> bool:
            # An incremental depends on its whole chain: its full's trees and every delta.
            if snap.id not in snap_memo:
                if snap.is_full:
                    snap_memo[snap.id] = uses_bad(snap.tree)
                else:
                    parent = by_id.get(snap.parent or "")
                    snap_memo[snap.id] = (
                        self._delta_uses_bad(snap, bad)
                        or parent is None
                        or snapshot_uses_bad(parent)
                    )
            return snap_memo[snap.id]

        for snap in snapshots:
            if snapshot_uses_bad(snap):
                self._mark_damaged(snap, "depends on damaged data")

    def _delta_uses_bad(self, snap: Snapshot, bad: set[bytes]) -> bool:
        if bytes.fromhex(snap.delta or "00") in bad:
            return True
        try:
            delta = load_delta(self.repo, snap)
        except CleancutError:
            return True
        return any(bytes.fromhex(b) in bad for n in delta.changed.values() for b in n.content)


@dataclass
class _Refs:
    trees: set[str] = field(default_factory=set)
    missing: set[bytes] = field(default_factory=set)
