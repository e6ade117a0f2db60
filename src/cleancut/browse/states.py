"""Snapshot states for browsing: replayed when a snapshot is first opened, a few kept.

A snapshot's state (every path it holds, its chain replayed from the full) is built the
first time something below the snapshot's directory is looked up, not when the mount
starts: a repository of a thousand snapshots mounts at once. The last few states are
kept (MAX_STATES), each with its directories' listings; an older one is replayed again
if it is opened again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from cleancut.repository.chain import snapshot_state
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.state import State
from cleancut.repository.tree import DIR

MAX_STATES = 4


@dataclass
class Listing:
    """A snapshot's state and, for each directory ('' the root), its entries' names."""

    state: State
    children: dict[str, list[str]]

    @classmethod
    def of(cls, state: State) -> Listing:
        children: dict[str, list[str]] = {"": []}
        for rel in sorted(state):
            parent, _, name = rel.rpartition("/")
            children.setdefault(parent, []).append(name)
            if state[rel].type == DIR:
                children.setdefault(rel, [])
        return cls(state, children)


class SnapshotStates:
    """The states of the snapshots being browsed, replayed on demand, MAX_STATES kept."""

    def __init__(self, repo: Repository, limit: int = MAX_STATES) -> None:
        self.repo = repo
        self.limit = limit
        self.kept: OrderedDict[str, Listing] = OrderedDict()
        self.problems: list[str] = []  # entries left out: names that cannot be paths
        self.replays = 0
        self.lock = threading.Lock()

    def listing(self, snapshot: Snapshot) -> Listing:
        with self.lock:
            found = self.kept.get(snapshot.id)
            if found is not None:
                self.kept.move_to_end(snapshot.id)
                return found
            problems: list[str] = []
            record = self.repo.load_snapshot(snapshot.id)  # authenticated again, not the cache's
            listing = Listing.of(snapshot_state(self.repo, record, problems))
            self.replays += 1
            self.problems.extend(f"snapshot {snapshot.id[:12]}: {p}" for p in problems)
            self.kept[snapshot.id] = listing
            while len(self.kept) > self.limit:
                self.kept.popitem(last=False)
            return listing
