"""Chains: a full snapshot and the incrementals that follow it.

Each incremental names its chain, its sequence number (contiguous from 0 at
the full), its parent's id and the hash of its parent's record. Restoring or
checking an incremental first verifies every link back to the full; a
missing or altered link is named (chain, sequence) and never skipped. Two
snapshots with one sequence number in a chain (a fork: two backups at once, or
a clock stepped back under an old version) are found by `find_forks`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cleancut.errors import ChainBroken, CleancutError, ObjectNotFound

from .pack import DELTA, pack_name
from .repository import Repository
from .snapshot import Snapshot, chain_order
from .state import Claims, Delta, State, apply_delta, tree_state
from .walk import load_tree

DELTA_READERS = 8  # delta manifests read at once while a chain's end state is built
DELTA_WINDOW = 64  # manifests held in memory at once, at most


def _broken(snap: Snapshot, seq: int, detail: str) -> ChainBroken:
    chain = (snap.chain or "?")[:12]
    return ChainBroken(f"chain {chain} broken at seq {seq}: {detail}")


def _prefetch_chain(repo: Repository, snapshot: Snapshot) -> None:
    """Start reading the chain's delta packs at once: a long chain reads hundreds of
    small deltas one after another, and a cold disk makes each wait. (Its records come
    from the cache, checked by their hashes: see verified_chain.)"""
    if snapshot.is_full:
        return
    names = set()
    for s in repo.snapshots():
        if s.chain == snapshot.chain and s.seq <= snapshot.seq:
            loc = repo.find_blob(bytes.fromhex(s.delta)) if s.delta else None
            if loc is not None:
                names.add(pack_name(loc.pack_id))
    if len(names) > 4:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(repo.prefetch, sorted(names)))
    else:
        for name in names:
            repo.prefetch(name)


def verified_chain(
    repo: Repository, snapshot: Snapshot, prefetch: bool = True
) -> list[Snapshot]:
    """The snapshots from the chain's full to `snapshot`, every link checked.

    `snapshot` itself was read from the repository and authenticated. Each parent is
    then known by the hash its child records of it (BLAKE3 of the parent's canonical
    record): the cache's copy of the parent's record (listed from the repository when
    it was opened) is used when it has that very hash, so a 1,000-long chain costs no
    1,000 reads and decryptions; any other parent is read from the repository, and a
    missing or altered one is named. `prefetch` starts reading the chain's delta packs
    (for a caller that goes on to replay them; a backup whose state is cached does not)."""
    if prefetch:
        _prefetch_chain(repo, snapshot)
    cached = {s.id: s for s in repo.snapshots()}
    links = [snapshot]
    current = snapshot
    while not current.is_full:
        if current.seq <= 0 or not current.parent or not current.parent_hash:
            raise _broken(current, current.seq, "an incremental without a parent link")
        known = cached.get(current.parent)
        if known is not None and known.record_hash == current.parent_hash:
            parent = known
        else:
            parent = _read_parent(repo, current)
        if parent.chain != current.chain:
            raise _broken(current, current.seq - 1, "the parent belongs to another chain")
        if parent.seq != current.seq - 1:
            raise _broken(current, current.seq - 1, f"sequence gap (found seq {parent.seq})")
        if parent.record_hash != current.parent_hash:
            raise _broken(current, current.seq - 1, "the record does not match its hash")
        links.append(parent)
        current = parent
    if current.seq != 0:
        raise _broken(current, current.seq, "the chain's full is not at seq 0")
    links.reverse()
    return links


def _read_parent(repo: Repository, current: Snapshot) -> Snapshot:
    """The parent's record read from the repository itself, or the broken link named."""
    try:
        return repo.load_snapshot(current.parent or "")
    except ObjectNotFound as exc:
        raise _broken(current, current.seq - 1, "the record is missing") from exc
    except CleancutError as exc:
        raise _broken(current, current.seq - 1, f"the record is damaged ({exc})") from exc


def load_delta(repo: Repository, snapshot: Snapshot) -> Delta:
    if not snapshot.delta:
        raise _broken(snapshot, snapshot.seq, "the incremental has no delta manifest")
    data = repo.load_blob(bytes.fromhex(snapshot.delta), expected_type=DELTA)
    return Delta.decode(data, f"delta of snapshot {snapshot.id[:12]}")


def snapshot_state(
    repo: Repository, snapshot: Snapshot, problems: list[str] | None = None
) -> State:
    """Replay the chain up to `snapshot`: its full's trees, then every delta in order."""
    links = verified_chain(repo, snapshot)
    state = tree_state(repo, links[0].tree, problems, Claims.of(links[0].summary))
    incrementals = links[1:]
    with ThreadPoolExecutor(max_workers=DELTA_READERS) as pool:
        # Each delta usually sits in a pack of its own: read a window of them at once
        # (the reads and decryption release the GIL), apply them in order.
        for start in range(0, len(incrementals), DELTA_WINDOW):
            window = incrementals[start : start + DELTA_WINDOW]
            for delta in pool.map(lambda link: load_delta(repo, link), window):
                apply_delta(state, delta, problems)
    return state


def own_blobs(repo: Repository, snapshot: Snapshot) -> set[bytes]:
    """The blobs a snapshot's own record needs: a full's trees and file data, or an
    incremental's delta manifest and the data of what it changed. (What an incremental
    inherits is its ancestors' own blobs; retention keeps those ancestors.)"""
    if snapshot.is_full:
        blobs: set[bytes] = set()
        stack = [snapshot.tree]
        while stack:
            tree_id = stack.pop()
            if bytes.fromhex(tree_id) in blobs:
                continue  # a tree named twice (equal directories) is walked once
            blobs.add(bytes.fromhex(tree_id))
            for node in load_tree(repo, tree_id):
                if node.subtree:
                    stack.append(node.subtree)
                blobs.update(bytes.fromhex(b) for b in node.content)
        return blobs
    delta = load_delta(repo, snapshot)
    blobs = {bytes.fromhex(snapshot.delta or "")}
    for node in delta.changed.values():
        blobs.update(bytes.fromhex(b) for b in node.content)
    return blobs


@dataclass(frozen=True)
class Fork:
    """Two snapshots or more with one sequence number in one chain."""

    chain: str
    seq: int
    snapshots: list[Snapshot]  # oldest first in chain order: the last is the one used

    def describe(self) -> str:
        ids = ", ".join(s.id[:12] for s in self.snapshots)
        return (
            f"chain {self.chain[:12]} of {self.snapshots[0].name} forked at seq {self.seq} "
            f"({ids}): each branch restores; 'latest' is the highest seq, the newest "
            "sibling on a tie; the next backup takes a full"
        )


def find_forks(snapshots: list[Snapshot]) -> list[Fork]:
    """Every fork, by chain and sequence number. Both branches still restore (each
    link names its parent); only "latest" must choose, and it chooses the newest."""
    by_link: dict[tuple[str, int], list[Snapshot]] = {}
    for snap in snapshots:
        if snap.chain:
            by_link.setdefault((snap.chain, snap.seq), []).append(snap)
    return [
        Fork(chain, seq, sorted(group, key=chain_order(group)))
        for (chain, seq), group in sorted(by_link.items())
        if len(group) > 1
    ]


def older_than_parent(snapshots: list[Snapshot]) -> list[str]:
    """Incrementals whose recorded time is earlier than their parent's: written by an
    older version while the clock was stepped back (this one records such a snapshot
    at its parent's time plus 1 µs, with clock_went_back). Chain order still holds."""
    by_id = {s.id: s for s in snapshots}
    found = []
    for snap in snapshots:
        parent = by_id.get(snap.parent or "") if not snap.is_full else None
        if parent is not None and snap.time < parent.time:
            found.append(
                f"snapshot {snap.id[:12]} (seq {snap.seq} of chain {(snap.chain or '?')[:12]}) "
                f"is recorded at {snap.time}, earlier than its parent {parent.id[:12]} at "
                f"{parent.time}: the clock went back; chain order, not time, orders them"
            )
    return found
