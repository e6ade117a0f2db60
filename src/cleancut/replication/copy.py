"""Copy snapshots to another repository, re-encrypted under that repository's keys.

Why it works as it does:

- Blob ids are keyed BLAKE3 under each repository's own ID key, so a blob has
  another id in the destination. Every blob is read from the source (through
  `load_blob`, which authenticates and re-hashes it), hashed under the
  destination's ID key, and stored only if the destination lacks it. Trees
  and delta manifests name blobs by id, so they are rewritten bottom-up.
- A chain restores only whole: an incremental is copied after its ancestors,
  its parent link (id and record hash) naming the destination's copy of its
  parent. Every source chain is verified before anything is written, so a
  broken one stops the copy before it starts.
- Per snapshot the commit order is the backup's (BlobSaver: packs, then the
  index segment; then the record). A copy killed at any instant leaves at most
  unreferenced packs; the next run finds what was committed by `copied_from`
  and finishes the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3

from cleancut import clock
from cleancut.archiver.saver import BlobSaver
from cleancut.backend.base import Backend
from cleancut.backend.location import backend_for
from cleancut.errors import (
    ChainBroken,
    CleancutError,
    NoPassphrase,
    NotARepository,
    SnapshotNotFound,
    UsageError,
    WrongPassphrase,
)
from cleancut.repository.chain import load_delta, verified_chain
from cleancut.repository.pack import DATA, DELTA, TREE
from cleancut.repository.records import list_records, write_record
from cleancut.repository.repository import Repository, read_config
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.state import Delta
from cleancut.repository.tree import DIR, FILE, Node, encode_tree
from cleancut.repository.walk import load_tree
from cleancut.settings.caps import capped
from cleancut.settings.config_file import ConfigFile, Replication

COPY = "copy"  # operational record type, written in the source repository by each copy run
READ_THREADS = 8  # source blobs read, decrypted and re-hashed at once (an object store is slow)
READ_AHEAD = 16  # blobs read ahead of the saver: bounds memory to ~16 chunks of plaintext

Origin = tuple[str, str]  # (repository id, snapshot id)


@dataclass
class CopiedSnapshot:
    source_id: str
    dest_id: str
    name: str
    kind: str
    seq: int
    time: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass
class CopyReport:
    source_repo: str
    dest_repo: str
    copied: list[CopiedSnapshot] = field(default_factory=list)
    skipped: int = 0  # wanted, but already in the destination
    blobs_read: int = 0
    bytes_read: int = 0  # plaintext read from the source
    blobs_transferred: int = 0
    bytes_uploaded: int = 0  # pack bytes written to the destination
    duration_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "source_repository": self.source_repo,
            "destination_repository": self.dest_repo,
            "snapshots_copied": len(self.copied),
            "snapshots_skipped": self.skipped,
            "copied": [c.to_json() for c in self.copied],
            "blobs_read": self.blobs_read,
            "bytes_read": self.bytes_read,
            "blobs_transferred": self.blobs_transferred,
            "bytes_uploaded": self.bytes_uploaded,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class CopyPlan:
    links: list[Snapshot]  # to copy, authenticated, every ancestor before its descendants
    present: dict[str, str]  # source snapshot id -> its copy already in the destination
    skipped: int


# --- provenance --------------------------------------------------------------


def copied_from(snapshot: Snapshot) -> Origin | None:
    """The repository and snapshot this one was copied from, if it is a copy."""
    raw = snapshot.copied_from
    if isinstance(raw, dict) and raw.get("repository") and raw.get("snapshot"):
        return str(raw["repository"]), str(raw["snapshot"])
    return None


def origin_of(repo_id: str, snapshot: Snapshot) -> Origin:
    """The snapshot every copy of it stands for: where it was first taken.

    Copies carry their original along (copied_from.origin), so replicas of replicas
    still recognise each other."""
    raw = snapshot.copied_from
    if isinstance(raw, dict):
        first = raw.get("origin")
        if isinstance(first, dict) and first.get("repository") and first.get("snapshot"):
            return str(first["repository"]), str(first["snapshot"])
    return copied_from(snapshot) or (repo_id, snapshot.id)


def present_in(src: Repository, dest: Repository) -> dict[str, str]:
    """Source snapshots the destination already holds: source id -> destination id.

    Two snapshots are the same when they stand for the same original: a copy made by
    an earlier run, the original itself when copying back, or a copy that came by
    another replica.
    """
    known: dict[Origin, str] = {}
    for snap in dest.snapshots():
        known.setdefault(origin_of(dest.config.id, snap), snap.id)
    present = {}
    for snap in src.snapshots():
        found = known.get(origin_of(src.config.id, snap))
        if found is not None:
            present[snap.id] = found
    return present


def destination_chain(source_repo: str, chain: str) -> str:
    """The chain id a copied full starts in the destination: deterministic, so a copy
    resumed after a crash continues the same chain, and distinct per source repository,
    so two replicas copied into one place never share a (chain, seq)."""
    return blake3.blake3(f"cleancut/copy/{source_repo}/{chain}".encode()).hexdigest()[:32]


# --- planning ----------------------------------------------------------------


def plan_copy(
    src: Repository, dest: Repository, source: str | None = None, since: datetime | None = None
) -> CopyPlan:
    """What to copy: the wanted snapshots the destination lacks, with every ancestor.

    Every chain involved is verified here, before anything is written, so a broken
    source chain stops the copy with nothing half-committed.
    """
    if src.config.id == dest.config.id:
        raise UsageError("the source and the destination are the same repository")
    snapshots = src.snapshots()
    if source is not None and not any(s.name == source for s in snapshots):
        raise SnapshotNotFound(f"the source repository holds no snapshot of {source}")
    wanted = [
        s
        for s in snapshots
        if (source is None or s.name == source)
        and (since is None or clock.from_iso(s.time) >= since)
    ]
    present = present_in(src, dest)
    needed = [s for s in wanted if s.id not in present]
    # Verify each chain once from its newest needed snapshot: that covers its ancestors.
    needed.sort(key=lambda s: (s.seq, s.time, s.id), reverse=True)
    order: dict[str, tuple[str, str, int]] = {}
    links: dict[str, Snapshot] = {}
    for snap in needed:
        if snap.id in links:
            continue
        try:
            chain = verified_chain(src, src.load_snapshot(snap.id))
        except ChainBroken as exc:
            raise ChainBroken(f"{exc}; nothing was copied") from exc
        head = chain[0]
        for link in chain:
            if link.id not in present and link.id not in links:
                links[link.id] = link
                order[link.id] = (head.time, head.id, link.seq)
    ordered = sorted(links.values(), key=lambda s: order[s.id])
    return CopyPlan(ordered, present, len(wanted) - len(needed))


# --- copying -----------------------------------------------------------------


def copy_snapshots(
    src: Repository, dest: Repository, source: str | None = None, since: datetime | None = None
) -> CopyReport:
    started = time.monotonic()
    plan = plan_copy(src, dest, source, since)
    report = CopyReport(src.config.id, dest.config.id, skipped=plan.skipped)
    dest_ids = dict(plan.present)
    written: dict[str, Snapshot] = {}  # destination records written by this run
    with _Remapper(src, dest) as remapper:
        for link in plan.links:
            parent = None
            if not link.is_full:
                parent_id = dest_ids.get(link.parent or "")
                if parent_id is None:  # plan_copy orders ancestors first: cannot happen
                    raise ChainBroken(f"snapshot {link.id[:12]}: its parent was not copied")
                parent = written.get(parent_id) or dest.load_snapshot(parent_id)
            copy = _copy_one(remapper, link, parent)
            dest_ids[link.id] = copy.id
            written[copy.id] = copy
            report.copied.append(
                CopiedSnapshot(link.id, copy.id, link.name, link.kind, link.seq, link.time)
            )
        report.blobs_read = remapper.blobs_read
        report.bytes_read = remapper.bytes_read
        report.blobs_transferred = remapper.blobs_added
        report.bytes_uploaded = remapper.bytes_added
    report.duration_s = time.monotonic() - started
    return report


def _copy_one(remapper: _Remapper, link: Snapshot, parent: Snapshot | None) -> Snapshot:
    """Store one snapshot's own blobs in the destination, then its record (commit order)."""
    src, dest = remapper.src, remapper.dest
    saver = BlobSaver(dest)
    remapper.begin(saver)
    try:
        tree = remapper.tree(link.tree) if link.tree else ""
        delta = remapper.delta(link) if link.delta else None
        saver.finish()
    finally:
        remapper.end()
        saver.close()
    _check_committed(dest, remapper.referenced)
    origin = origin_of(src.config.id, link)
    provenance = {
        "repository": src.config.id,
        "snapshot": link.id,
        "origin": {"repository": origin[0], "snapshot": origin[1]},
    }
    if parent is None:
        chain = destination_chain(src.config.id, link.chain) if link.chain else None
    else:
        chain = parent.chain  # copying back joins the chain the parent already is in
    copy = dataclasses.replace(
        link,
        tree=tree,
        delta=delta,
        chain=chain,
        parent=parent.id if parent else None,
        parent_hash=parent.record_hash if parent else None,
        copied_from=provenance,
        id="",
        record_hash="",
    )
    dest.write_snapshot(copy)
    return copy


def _check_committed(dest: Repository, referenced: set[bytes]) -> None:
    """Commit only if every blob the record will name is indexed (as backup does): a prune
    running on the destination meanwhile may have taken a pack this copy deduplicated on."""
    dest.sync_cache()
    dest.reread_index()
    missing = [b for b in referenced if not dest.has_blob(b)]
    if missing:
        raise CleancutError(
            f"{len(missing)} blob(s) left the destination's index while copying "
            "(a concurrent prune); that snapshot was not committed: run the copy again"
        )


class _Remapper:
    """Source blob ids -> destination blob ids, storing what the destination lacks.

    The maps live for the whole run, so a blob or a tree shared by several snapshots
    is read once; they hold one entry per distinct blob, which is bounded.
    """

    def __init__(self, src: Repository, dest: Repository) -> None:
        self.src = src
        self.dest = dest
        self.blobs: dict[bytes, bytes] = {}
        self.trees: dict[str, str] = {}
        self.pool = ThreadPoolExecutor(max_workers=READ_THREADS)
        self.saver: BlobSaver | None = None
        self.referenced: set[bytes] = set()
        self.blobs_read = self.bytes_read = 0
        self.blobs_added = self.bytes_added = 0

    def __enter__(self) -> _Remapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def begin(self, saver: BlobSaver) -> None:
        self.saver = saver
        self.referenced = set()

    def end(self) -> None:
        assert self.saver is not None
        self.blobs_added += self.saver.blobs_added
        self.bytes_added += self.saver.bytes_added
        self.saver = None

    # --- data ---------------------------------------------------------------

    def data(self, ids: Iterable[bytes]) -> None:
        """Map file content, reading blobs in parallel but storing them in order."""
        todo = [b for b in dict.fromkeys(ids) if b not in self.blobs]
        window: deque[Future[tuple[bytes, bytes, bytes]]] = deque()
        for blob_id in todo:
            window.append(self.pool.submit(self._read, blob_id))
            if len(window) >= READ_AHEAD:
                self._store(DATA, *window.popleft().result())
        while window:
            self._store(DATA, *window.popleft().result())

    def _read(self, blob_id: bytes) -> tuple[bytes, bytes, bytes]:
        plain = self.src.load_blob(blob_id, expected_type=DATA)  # authenticated and re-hashed
        return blob_id, plain, self.dest.keys.blob_id(plain)

    def _store(self, blob_type: int, src_id: bytes, plain: bytes, dest_id: bytes) -> None:
        assert self.saver is not None
        self.blobs[src_id] = dest_id
        self.blobs_read += 1
        self.bytes_read += len(plain)
        self._put(blob_type, plain, dest_id)

    def _count_read(self, blob_hex: str) -> None:
        """A tree or delta read through its own path: counted from its index entry."""
        self.blobs_read += 1
        self.bytes_read += self.src.locate(bytes.fromhex(blob_hex)).entry.raw_length

    def _put(self, blob_type: int, plain: bytes, dest_id: bytes) -> None:
        assert self.saver is not None
        if not self.dest.has_blob(dest_id):
            self.saver.submit(blob_type, plain, dest_id)  # the saver dedups blobs in flight
        self.referenced.add(dest_id)

    def _content(self, node: Node) -> Node:
        if node.type != FILE:
            return node
        content = [self.blobs[bytes.fromhex(b)] for b in node.content]
        self.referenced.update(content)
        return dataclasses.replace(node, content=[b.hex() for b in content])

    # --- trees and deltas -----------------------------------------------------

    def tree(self, root: str) -> str:
        """Rewrite a full's trees bottom-up: a tree's new bytes need its children's new ids."""
        nodes_of: dict[str, list[Node]] = {}
        postorder: list[str] = []  # every subtree before each tree naming it (equal
        stack = [(root, False)]  # directories share one tree, so it is a DAG walk)
        while stack:
            tree_id, expanded = stack.pop()
            if expanded:
                postorder.append(tree_id)
                continue
            if tree_id in self.trees or tree_id in nodes_of:
                continue
            nodes = load_tree(self.src, tree_id)
            self._count_read(tree_id)
            nodes_of[tree_id] = nodes
            stack.append((tree_id, True))
            stack += [(n.subtree, False) for n in nodes if n.type == DIR and n.subtree]
        self.data(bytes.fromhex(b) for ns in nodes_of.values() for n in ns for b in n.content)
        for tree_id in postorder:
            nodes = [self._subtree(self._content(n)) for n in nodes_of[tree_id]]
            data = encode_tree(nodes)
            dest_id = self.dest.keys.blob_id(data)
            self._put(TREE, data, dest_id)
            self.trees[tree_id] = dest_id.hex()
        self.referenced.add(bytes.fromhex(self.trees[root]))
        return self.trees[root]

    def _subtree(self, node: Node) -> Node:
        if node.type != DIR or not node.subtree:
            return node
        return dataclasses.replace(node, subtree=self.trees[node.subtree])

    def delta(self, snapshot: Snapshot) -> str:
        """Rewrite an incremental's delta manifest with the destination's content ids."""
        delta = load_delta(self.src, snapshot)
        self._count_read(snapshot.delta or "")
        self.data(bytes.fromhex(b) for n in delta.changed.values() for b in n.content)
        rewritten = Delta(
            {path: self._content(node) for path, node in delta.changed.items()},
            list(delta.deleted),
        )
        data = rewritten.encode()
        dest_id = self.dest.keys.blob_id(data)
        self._put(DELTA, data, dest_id)
        return dest_id.hex()


# --- a run, recorded; and the schedule ---------------------------------------


def run_copy(
    src: Repository,
    dest: Repository,
    location: str,
    source: str | None = None,
    since: datetime | None = None,
) -> CopyReport:
    """Copy, and leave a COPY record in the source (what `tick` and `status` read).

    The record is best effort: a source opened read-only still copies.
    """
    try:
        report = copy_snapshots(src, dest, source, since)
    except CleancutError as exc:
        _record(
            src,
            {
                "to": location,
                "destination_repository": dest.config.id,
                "ok": False,
                "error": str(exc),
            },
        )
        raise
    outcome = report.to_json()
    del outcome["copied"]  # the counts are what the schedule and status need
    _record(src, {"to": location, "ok": True, **outcome})
    return report


def _record(repo: Repository, fields: dict[str, Any]) -> None:
    record = {"type": COPY, "time": clock.iso(clock.now()), **fields}
    with contextlib.suppress(CleancutError, OSError):
        write_record(repo, record)


def copy_due(repo: Repository, replication: Replication, now: datetime) -> bool:
    """Due when no copy to this destination has succeeded within the interval."""
    done = [r for r in list_records(repo, COPY) if r.get("ok") and r.get("to") == replication.to]
    if not done:
        return True
    return (now - clock.from_iso(done[-1]["time"])).total_seconds() >= replication.interval


def replica_passphrase(config: ConfigFile) -> str:
    """The destination's passphrase for a scheduled copy, with no terminal to ask at:
    [replication] password_file, else CLEANCUT_TO_PASSWORD, else the source's own
    (CLEANCUT_PASSWORD_FILE, the file's password_file, CLEANCUT_PASSWORD)."""
    replication = config.replication
    if replication is not None and replication.password_file:
        return _read_secret(replication.password_file)
    env = os.environ.get("CLEANCUT_TO_PASSWORD")
    if env is not None:
        return env
    for candidate in (os.environ.get("CLEANCUT_PASSWORD_FILE"), config.password_file):
        if candidate:
            return _read_secret(candidate)
    env = os.environ.get("CLEANCUT_PASSWORD")
    if env is not None:
        return env
    raise NoPassphrase(
        "no passphrase for the replica: set password_file in [replication] or CLEANCUT_TO_PASSWORD"
    )


def _read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read password file {path}: {exc.strerror}") from exc


def read_destination_config(location: str) -> None:
    """Fail early, before any passphrase is asked for, if the destination is no repository."""
    try:
        read_config(backend_for(location))
    except NotARepository as exc:
        raise NotARepository(f"destination: {exc}; create it first with cleancut init") from None


def open_destination(
    location: str, passphrase: str, cache_root: Path | None, backend: Backend | None = None
) -> Repository:
    """Open the repository copies go to; it must exist (`cleancut init` creates it with
    its own keys). Errors name it: two repositories are in play. `backend`: the
    location already opened with this run's caps and append-only choice."""
    try:
        return Repository.open(backend or backend_for(location), passphrase, cache_root)
    except (NotARepository, WrongPassphrase) as exc:
        hint = "; create it first with cleancut init" if isinstance(exc, NotARepository) else ""
        raise type(exc)(f"destination: {exc}{hint}") from None


def scheduled_copy(repo: Repository, config: ConfigFile, passphrase: str | None = None) -> str:
    """One scheduled copy to [replication] `to`; the line `tick` prints."""
    replication = config.replication
    assert replication is not None
    cache_root = repo.cache_root
    dest = open_destination(
        replication.to,
        passphrase if passphrase is not None else replica_passphrase(config),
        cache_root,
        _capped(replication.to, config),
    )
    try:
        report = run_copy(repo, dest, replication.to)
    finally:
        dest.close()
    return (
        f"{len(report.copied)} snapshot(s) copied to {replication.to}, "
        f"{report.bytes_uploaded} bytes uploaded in {report.duration_s:.1f}s"
    )


def _capped(location: str, config: ConfigFile) -> Backend:
    """A remote replica is uploaded to under its profile's bandwidth cap, as a backup is."""
    return capped(backend_for(location), config)
