"""Read-only views of a repository: listing, diffing, statistics."""

from __future__ import annotations

from dataclasses import dataclass

from cleancut.errors import NotInSnapshot

from .chain import snapshot_state
from .repository import INDEX_PREFIX, Repository
from .snapshot import SNAPSHOTS_PREFIX, Snapshot
from .state import same_node
from .tree import FILE, Node


def list_snapshot(repo: Repository, snapshot: Snapshot, path: str = "") -> list[tuple[str, Node]]:
    """Entries at and below `path` in a snapshot, in path order."""
    state = snapshot_state(repo, snapshot)
    path = path.strip("/")
    if path and path not in state:
        raise NotInSnapshot(f"no {path!r} in snapshot {snapshot.id[:12]}")
    prefix = path + "/"
    keys = [p for p in state if not path or p == path or p.startswith(prefix)]
    return [(p, state[p]) for p in sorted(keys, key=lambda p: p.split("/"))]


@dataclass
class Change:
    kind: str  # "+" added, "-" removed, "M" content changed, "U" metadata only, "T" type changed
    path: str


def diff_snapshots(repo: Repository, a: Snapshot, b: Snapshot) -> list[Change]:
    old, new = snapshot_state(repo, a), snapshot_state(repo, b)
    changes = []
    for path in sorted(old.keys() | new.keys(), key=lambda p: p.split("/")):
        before, after = old.get(path), new.get(path)
        if before is None:
            changes.append(Change("+", path))
        elif after is None:
            changes.append(Change("-", path))
        elif before.type != after.type:
            changes.append(Change("T", path))
        elif before.type == FILE and (before.content, before.size) != (after.content, after.size):
            changes.append(Change("M", path))
        elif not same_node(before, after):
            changes.append(Change("U", path))
    return changes


def repository_stats(repo: Repository) -> dict[str, object]:
    counts = repo.index_counts()
    snaps = repo.snapshots()
    logical = sum(int(s.summary.get("bytes_total", 0)) for s in snaps)
    meta_bytes = sum(repo.object_sizes(INDEX_PREFIX).values())
    meta_bytes += sum(repo.object_sizes(SNAPSHOTS_PREFIX).values())
    stored = int(counts["stored_bytes"])
    unique = int(counts["raw_bytes"])
    return {
        "snapshots": len(snaps),
        "logical_bytes": logical,
        "unique_bytes": unique,
        "stored_bytes": stored + meta_bytes,
        "pack_bytes": stored,
        "blobs": counts["blobs"],
        "packs": counts["packs"],
        "dedup_ratio": round(logical / unique, 3) if unique else None,
        "compression_ratio": round(unique / stored, 3) if stored else None,
        "total_ratio": round(logical / (stored + meta_bytes), 3) if stored else None,
    }
