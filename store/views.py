"""Read-only views of a repository: listing, diffing, statistics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import PathNotFound
from .repository import INDEX_PREFIX, Repository
from .snapshot import SNAPSHOTS_PREFIX, Snapshot
from .tree import DIR, FILE, Node
from .walk import find, load_tree, walk


def list_snapshot(
    repo: Repository, snapshot: Snapshot, path: str = ""
) -> Iterator[tuple[str, Node]]:
    """Entries at and below `path` in a snapshot."""
    path = path.strip("/")
    if not path:
        yield from walk(repo, snapshot.tree)
        return
    node = find(repo, snapshot.tree, path)
    if node is None:
        raise PathNotFound(f"no {path!r} in snapshot {snapshot.id[:12]}")
    yield path, node
    if node.type == DIR and node.subtree:
        yield from walk(repo, node.subtree, path)


@dataclass
class Change:
    kind: str  # "+" added, "-" removed, "M" content changed, "U" metadata only, "T" type changed
    path: str


def _same_meta(a: Node, b: Node) -> bool:
    return (a.mode, a.mtime_ns, a.uid, a.gid, a.target) == (
        b.mode,
        b.mtime_ns,
        b.uid,
        b.gid,
        b.target,
    )


def diff_trees(
    repo: Repository, a: str | None, b: str | None, prefix: str = ""
) -> Iterator[Change]:
    """Changes from tree a to tree b; identical subtrees (same blob id) are skipped unread."""
    if a == b:
        return
    left = {n.name: n for n in load_tree(repo, a)} if a else {}
    right = {n.name: n for n in load_tree(repo, b)} if b else {}
    for name in sorted(left.keys() | right.keys()):
        path = f"{prefix}/{name}" if prefix else name
        old, new = left.get(name), right.get(name)
        if old is None and new is not None:
            yield Change("+", path)
            if new.type == DIR:
                yield from diff_trees(repo, None, new.subtree, path)
        elif new is None and old is not None:
            yield Change("-", path)
            if old.type == DIR:
                yield from diff_trees(repo, old.subtree, None, path)
        elif old is not None and new is not None:
            if old.type != new.type:
                yield Change("T", path)
            elif old.type == DIR:
                if not _same_meta(old, new):
                    yield Change("U", path)
                yield from diff_trees(repo, old.subtree, new.subtree, path)
            elif old.type == FILE and (old.content != new.content or old.size != new.size):
                yield Change("M", path)
            elif not _same_meta(old, new):
                yield Change("U", path)


def repository_stats(repo: Repository) -> dict[str, object]:
    counts = repo.cache.counts()
    snaps = repo.snapshots()
    logical = sum(int(s.summary.get("bytes_total", 0)) for s in snaps)
    meta_bytes = sum(i.size for i in repo.backend.list(INDEX_PREFIX))
    meta_bytes += sum(i.size for i in repo.backend.list(SNAPSHOTS_PREFIX))
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
