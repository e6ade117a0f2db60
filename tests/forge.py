"""Writing snapshots with hand-made trees, as an attacker holding the key could.

Used to prove that restore refuses entries that would escape its target even
when the tree is authentic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cleancut.store.local import LocalBackend
from cleancut.store.pack import DATA, TREE
from cleancut.store.repository import Repository
from cleancut.store.saver import BlobSaver
from cleancut.store.snapshot import Snapshot
from cleancut.store.tree import DIR, FILE, SYMLINK, Node, encode_tree
from conftest import PASSWORD


def forge_snapshot(repo_dir: Path, cache_dir: Path, entries: list[dict[str, Any]]) -> str:
    """entries: {"name", "type": file|dir|symlink, "data" | "children" | "target"}."""
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
    )
    sid = repo.write_snapshot(snap)
    repo.close()
    return sid
