"""Check: is every snapshot restorable from what the repository holds?

Structure: every index segment and snapshot record decrypts and
authenticates; every index entry points inside an existing pack of the
recorded size; every tree decodes; every blob a snapshot references is
indexed. With read_data, packs are read in full: their names must match their
hashes, and every blob must decrypt and hash to its ID. Damage is reported by
pack, with the snapshots that depend on it. Key slots are checked against
their check values, and every operational record and damage record is
authenticated.

What is found damaged is remembered in the repository (repository/damage.py): later
backups store fresh copies instead of deduplicating against it, and later
checks keep reporting the pack until `repair packs` has replaced it. A snapshot
is damaged only if a blob it needs has no intact indexed copy.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from cleancut.errors import ChainBroken, CleancutError, ExitCode
from cleancut.journal.repo.store import all_batches
from cleancut.journal.repo.verify import verify_journal
from cleancut.repository.chain import find_forks, load_delta, older_than_parent, verified_chain
from cleancut.repository.compress import decompress
from cleancut.repository.crypto import Sealer, content_hash
from cleancut.repository.damage import Damage
from cleancut.repository.index import PackRecord
from cleancut.repository.pack import BlobEntry, blob_aad, pack_sealer, parse_header
from cleancut.repository.records import damaged_records, missing_tips
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.tree import DIR, FILE
from cleancut.repository.walk import load_tree


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged_packs: list[str] = field(default_factory=list)
    damaged_snapshots: list[str] = field(default_factory=list)
    damaged_keys: list[str] = field(default_factory=list)
    damaged_records: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.INTEGRITY

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "notes": self.notes,
            "damaged_packs": self.damaged_packs,
            "damaged_snapshots": self.damaged_snapshots,
            "damaged_keys": self.damaged_keys,
            "damaged_records": self.damaged_records,
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
        self.blob_pack: dict[bytes, list[str]] = {}  # blob -> every pack that indexes it
        self.found = Damage()  # damaged blob locations found by this run
        self.intact: set[str] = set()  # packs read in full and found intact by this run

    def run(self, read_data_percent: float = 0.0) -> CheckReport:
        self._check_keys()
        self._check_records()
        self._check_journal()
        self._check_index()
        snapshots = self._check_snapshots()
        self.report.notes.extend(fork.describe() for fork in find_forks(snapshots))
        self.report.notes.extend(older_than_parent(snapshots))
        refs = self._check_trees(snapshots)
        if read_data_percent > 0:
            self._read_data(read_data_percent)
        known = self._known_damage()
        bad_blobs = self._without_intact_copy(known.pairs() | self.found.pairs())
        bad_blobs |= refs.missing
        if bad_blobs:
            self._blame(snapshots, bad_blobs)
        self._remember(known)
        return self.report

    def _check_keys(self) -> None:
        """Every key slot against its check value, and the config against the slots' hash."""
        slots, config = self.repo.keyring.problems(self.repo.keys)
        if config:
            self.report.errors.append(config)
        for slot_id, problem in sorted(slots.items()):
            self.report.errors.append(problem)
            self.report.damaged_keys.append(slot_id)

    def _check_records(self) -> None:
        """Authenticate every operational record; name each damaged one."""
        for rid, problem in damaged_records(self.repo):
            self.report.errors.append(f"record {rid}: {problem}")
            self.report.damaged_records.append(rid)

    def _check_journal(self) -> None:
        """Authenticate every journal batch; each source's lineages must have no hole."""
        batches, damaged = all_batches(self.repo, cached=False)
        for oid in damaged:
            self.report.errors.append(f"journal batch {oid[:12]}: damaged (fails authentication)")
        for name in sorted({b.name for b in batches}):
            for problem in verify_journal(self.repo, name, read_data=False).problems:
                if not any(oid[:12] in problem for oid in damaged):  # named above already
                    self.report.errors.append(f"journal of {name}: {problem}")

    def _blobs_of(self, pack_id: str) -> set[bytes]:
        record = self.index.get(pack_id)
        return {e.id for e in record.entries} if record else set()

    def _damaged(self, pack_id: str, problem: str, blobs: set[bytes]) -> None:
        self.report.errors.append(f"pack {pack_id[:12]}: {problem}")
        self.report.damaged_packs.append(pack_id)
        self.found.add(pack_id, blobs)

    def _known_damage(self) -> Damage:
        """Report what earlier checks found and this one did not read again."""
        known = self.repo.load_damage()
        for oid, why in known.unreadable:
            self.report.errors.append(f"damage record {oid}: {why}")
        for pack_id, blobs in sorted(known.packs.items()):
            unread = pack_id not in self.intact and pack_id not in self.report.damaged_packs
            if pack_id in self.index and unread:
                self.report.errors.append(
                    f"pack {pack_id[:12]}: found damaged by an earlier check "
                    f"({len(blobs)} blob(s)); 'cleancut repair packs' replaces it"
                )
                self.report.damaged_packs.append(pack_id)
        return known

    def _without_intact_copy(self, damaged: set[tuple[str, bytes]]) -> set[bytes]:
        """The damaged blobs that no other indexed location holds intact."""
        return {
            blob
            for _pack, blob in damaged
            if not any((q, blob) not in damaged for q in self.blob_pack.get(blob, []))
        }

    def _remember(self, known: Damage) -> None:
        """Write new damage to the repository; forget packs a full read found intact again."""
        try:
            if self.repo.remember_damage(self.found):
                self.report.notes.append(
                    "the damage found is recorded in the repository: new backups store fresh "
                    "copies of damaged blobs; 'cleancut repair packs --from DIR' heals snapshots"
                )
            healed = set(known.packs) & self.intact
            if healed:
                self.repo.refuse_if_append_only("forgetting healed damage records")
                keep = Damage({p: b for p, b in known.packs.items() if p not in healed})
                self.repo.replace_damage(keep, known)
                self.report.notes.append(
                    f"{len(healed)} pack(s) recorded as damaged now read intact: record removed"
                )
        except (CleancutError, OSError) as exc:
            self.report.notes.append(f"could not update the damage records: {exc}")

    def _check_index(self) -> None:
        sizes = self.repo.pack_sizes()
        for sid in self.repo.segment_ids():
            try:
                segment = self.repo.load_segment(sid)
            except CleancutError as exc:
                self.report.errors.append(f"index segment {sid[:12]}: {exc}")
                continue
            for record in segment.packs:
                self.index[record.pack_id] = record
                for e in record.entries:
                    self.blob_pack.setdefault(e.id, []).append(record.pack_id)
        self.report.packs = len(self.index)
        for pack_id, record in self.index.items():
            size = sizes.get(pack_id)
            if size is None:
                self._damaged(pack_id, "is indexed but missing", self._blobs_of(pack_id))
            elif size != record.size or any(e.offset + e.length > size for e in record.entries):
                self._damaged(
                    pack_id,
                    f"is {size} bytes, the index says {record.size} (truncated?)",
                    self._blobs_of(pack_id),
                )
        unindexed = set(sizes) - set(self.index)
        if unindexed:
            self.report.notes.append(
                f"{len(unindexed)} pack(s) are not indexed: left by an interrupted backup or "
                "marked for deletion by prune; a snapshot that needed one is reported above"
            )

    def _check_snapshots(self) -> list[Snapshot]:
        good = []
        for sid in self.repo.snapshot_ids():
            try:
                good.append(self.repo.load_snapshot(sid))
            except CleancutError as exc:
                self.report.errors.append(f"snapshot {sid[:12]}: {exc}")
                self.report.damaged_snapshots.append(sid)
        self.report.snapshots = len(good)
        present = set(self.repo.snapshot_ids())
        for name, sid, rid in missing_tips(self.repo, present):
            self.report.errors.append(
                f"snapshot {sid[:12]} ({name}) is missing: backup-attempt record {rid[:12]} "
                "says it was written, and no forget removed it"
            )
            self.report.damaged_snapshots.append(sid)
        for snap in good:
            if snap.parent and snap.parent not in present:
                self.report.errors.append(
                    f"snapshot {snap.parent[:12]} is missing: snapshot {snap.id[:12]} "
                    f"({snap.name}) names it as its parent"
                )
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
        """Every tree below `tree_id` is indexed and decodes, and so are its files' blobs.

        Iterative, with an explicit stack: a source can be nested deeper than Python's
        recursion limit, and a tree that backs up must check.
        """
        stack = [tree_id]
        while stack:
            tid_hex = stack.pop()
            if tid_hex in refs.trees:
                continue
            refs.trees.add(tid_hex)
            tid = bytes.fromhex(tid_hex)
            if tid not in self.blob_pack:
                self.report.errors.append(f"{where}: tree {tid_hex[:12]} is in no index segment")
                refs.missing.add(tid)
                continue
            try:
                nodes = load_tree(self.repo, tid_hex)
            except CleancutError as exc:
                self.report.errors.append(f"{where}: {exc}")
                refs.missing.add(tid)
                continue
            for node in nodes:
                if node.type == DIR and node.subtree:
                    stack.append(node.subtree)
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
            problem, bad = self._read_pack(pack_id)
            self.report.packs_read += 1
            if problem:
                self._damaged(pack_id, problem, bad)
            else:
                self.intact.add(pack_id)
            if self.on_pack:
                self.on_pack(self.index[pack_id].size)

    def _read_pack(self, pack_id: str) -> tuple[str | None, set[bytes]]:
        """What is wrong with a pack (None: intact), and which of its blobs are damaged."""
        try:
            data = self.repo.read_pack(pack_id)
        except CleancutError as exc:
            return str(exc), self._blobs_of(pack_id)
        if content_hash(data) != pack_id:
            # Go on: name the blobs that are damaged, and keep the report useful.
            bad = self._read_blobs(pack_id, data)
            detail = f"; {len(bad)} of {len(self.index[pack_id].entries)} blobs are damaged"
            return "content does not match its name (damaged)" + (detail if bad else ""), bad
        try:
            _salt, entries = parse_header(self.repo.keys, data, f"pack {pack_id[:12]}")
        except CleancutError as exc:
            return str(exc), self._read_blobs(pack_id, data)
        if {e.id for e in entries} != {e.id for e in self.index[pack_id].entries}:
            return "its header and the index disagree on which blobs it holds", set()
        bad = self._read_blobs(pack_id, data)
        if bad:
            return f"{len(bad)} of {len(self.index[pack_id].entries)} blobs are damaged", bad
        return None, set()

    def _read_blobs(self, pack_id: str, data: bytes) -> set[bytes]:
        record = self.index[pack_id]
        sealer = pack_sealer(self.repo.keys, record.salt)
        bad = set()
        for e in record.entries:
            self.report.blobs_read += 1
            if not self._blob_ok(sealer, data, e):
                bad.add(e.id)
        return bad

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
