"""Writing snapshots with hand-made trees, as an attacker holding the key could.

Used to prove that restore refuses entries that would escape its target even
when the tree is authentic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import PASSWORD

from cleancut.archiver.saver import BlobSaver
from cleancut.backend.local import LocalBackend
from cleancut.repository.pack import DATA, TREE
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node, encode_tree


def forge_snapshot(
    repo_dir: Path,
    cache_dir: Path,
    entries: list[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    capture: dict[str, Any] | None = None,
) -> str:
    """entries: {"name", "type": file|dir|symlink, "data" | "children" | "target"}, and
    optionally "meta": node fields to set as given (say an out-of-range "mode")."""
    repo = Repository.open(LocalBackend(repo_dir), PASSWORD, cache_dir)
    saver = BlobSaver(repo)
    try:

        def build(items: list[dict[str, Any]]) -> str:
            nodes = []
            for item in items:
                now = time.time_ns()
                if item["type"] == FILE:
                    data: bytes = item["data"]
                    blob = saver.resolve(saver.submit(DATA, data)).hex()
                    nodes.append(
                        Node(item["name"], FILE, 0o644, now, size=len(data), content=[blob])
                    )
                elif item["type"] == DIR:
                    sub = build(item.get("children", []))
                    nodes.append(Node(item["name"], DIR, 0o755, now, subtree=sub))
                else:
                    nodes.append(Node(item["name"], SYMLINK, 0o777, now, target=item["target"]))
            for item, node in zip(items, nodes, strict=True):
                for key, value in item.get("meta", {}).items():
                    setattr(node, key, value)
            raw = encode_tree(nodes)
            tree_id = repo.keys.blob_id(raw)
            saver.resolve(saver.submit(TREE, raw, tree_id))
            return tree_id.hex()

        root = build(entries)
        saver.finish()
    finally:
        saver.close()
    snap = Snapshot(
        time="2026-01-01T00:00:00.000000Z",
        name="forged",
        host="h",
        user="u",
        paths=["/x"],
        tree=root,
        summary=dict(summary or {}),
        capture=dict(capture or {}),
    )
    sid = repo.write_snapshot(snap)
    repo.close()
    return sid


def forge_reused_tree(
    repo_dir: Path, cache_dir: Path, depth: int, summary: dict[str, Any] | None = None
) -> str:
    """A snapshot whose every directory holds two entries naming the same subtree: `depth`
    distinct trees, 2**depth directories at the bottom level."""
    repo = Repository.open(LocalBackend(repo_dir), PASSWORD, cache_dir)
    saver = BlobSaver(repo)
    try:
        tree_id = ""
        nodes: list[Node] = []
        for _ in range(depth + 1):
            raw = encode_tree(nodes)
            tree_id = repo.keys.blob_id(raw).hex()
            saver.resolve(saver.submit(TREE, raw, bytes.fromhex(tree_id)))
            nodes = [Node(n, DIR, 0o755, 0, subtree=tree_id) for n in ("a", "b")]
        saver.finish()
    finally:
        saver.close()
    snap = Snapshot(
        time="2026-01-01T00:00:00.000000Z",
        name="forged",
        host="h",
        user="u",
        paths=["/x"],
        tree=tree_id,
        summary=dict(summary or {}),
    )
    sid = repo.write_snapshot(snap)
    repo.close()
    return sid
