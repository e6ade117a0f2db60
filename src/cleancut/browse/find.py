"""`find`: which snapshots hold paths that match a glob pattern, and those paths.

A pattern without '/' is matched against each entry's name (`*.md`, `SOUL.md`); one
with '/' against its whole path in the snapshot, a leading '/' ignored
(`workspace/memory/*`). Matching is fnmatch's: `*` and `?` also match '/', `[...]`
is a set; --ignore-case folds case. Each chain is replayed once from its full,
snapshot after snapshot, so searching a chain of a thousand incrementals costs one
replay, not a thousand. A chain that does not verify is named in the outcome
(its snapshots are not searched) and the others are still searched.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cleancut.errors import CleancutError, ExitCode
from cleancut.repository.chain import load_delta, snapshot_state, verified_chain
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.state import Claims, State, apply_delta, tree_state
from cleancut.repository.tree import Node


@dataclass
class Found:
    snapshot: Snapshot
    matches: list[tuple[str, Node]]


@dataclass
class FindOutcome:
    pattern: str
    searched: int = 0
    found: list[Found] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (exit code, line)

    @property
    def exit_code(self) -> int:
        return self.errors[0][0] if self.errors else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "searched": self.searched,
            "snapshots": [
                {
                    "snapshot": f.snapshot.id,
                    "name": f.snapshot.name,
                    "time": f.snapshot.time,
                    "matches": [_match_json(p, n) for p, n in f.matches],
                }
                for f in self.found
            ],
            "errors": [line for _, line in self.errors],
        }


def _match_json(path: str, node: Node) -> dict[str, Any]:
    return {
        "path": path,
        "type": node.type,
        "mode": oct(node.mode),
        "size": node.size,
        "mtime_ns": node.mtime_ns,
    }


class Pattern:
    def __init__(self, text: str, ignore_case: bool = False) -> None:
        self.whole_path = "/" in text
        self.ignore_case = ignore_case
        text = text.lstrip("/") if self.whole_path else text
        self.text = text.casefold() if ignore_case else text

    def matches(self, path: str) -> bool:
        subject = path if self.whole_path else path.rpartition("/")[2]
        if self.ignore_case:
            subject = subject.casefold()
        return fnmatch.fnmatchcase(subject, self.text)


def find(
    repo: Repository,
    pattern: str,
    snapshots: list[Snapshot],
    ignore_case: bool = False,
) -> FindOutcome:
    """Search `snapshots` (oldest first in the outcome) for paths matching `pattern`."""
    match = Pattern(pattern, ignore_case)
    outcome = FindOutcome(pattern)
    wanted = {s.id: s for s in snapshots}
    found: dict[str, Found] = {}
    for snap, state in _states(repo, list(wanted.values()), outcome):
        if snap.id not in wanted:
            continue
        outcome.searched += 1
        hits = sorted((p for p in state if match.matches(p)), key=lambda p: p.split("/"))
        if hits:
            found[snap.id] = Found(snap, [(p, state[p]) for p in hits])
    outcome.found = sorted(found.values(), key=lambda f: (f.snapshot.time, f.snapshot.id))
    return outcome


def _states(
    repo: Repository, snapshots: list[Snapshot], outcome: FindOutcome
) -> Iterator[tuple[Snapshot, State]]:
    """Each snapshot's state, a chain at a time: replayed once from its full, the state
    handed out after each link. A snapshot the chain's newest does not pass through
    (a fork's other branch, a snapshot outside any chain) is replayed on its own."""
    by_chain: dict[str, list[Snapshot]] = {}
    alone: list[Snapshot] = []
    for snap in snapshots:
        if snap.chain:
            by_chain.setdefault(snap.chain, []).append(snap)
        else:
            alone.append(snap)
    done: set[str] = set()
    for group in by_chain.values():
        newest = max(group, key=lambda s: (s.seq, s.time, s.id))
        try:
            links = verified_chain(repo, repo.load_snapshot(newest.id))
            state = tree_state(repo, links[0].tree, None, Claims.of(links[0].summary))
            done.add(links[0].id)
            yield links[0], state
            for link in links[1:]:
                apply_delta(state, load_delta(repo, link))
                done.add(link.id)
                yield link, state
        except CleancutError as exc:
            outcome.errors.append((exc.exit_code, f"snapshot {newest.id[:12]}: {exc}"))
            done.update(s.id for s in group)
    for snap in alone + [s for g in by_chain.values() for s in g if s.id not in done]:
        try:
            yield snap, snapshot_state(repo, repo.load_snapshot(snap.id))
        except CleancutError as exc:
            outcome.errors.append((exc.exit_code, f"snapshot {snap.id[:12]}: {exc}"))
