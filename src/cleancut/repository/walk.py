"""Walking a snapshot's trees: the one place that turns tree blobs into paths."""

from __future__ import annotations

from collections.abc import Iterator

from .repository import Repository
from .tree import DIR, Node, decode_tree


def load_tree(repo: Repository, tree_id: str) -> list[Node]:
    return decode_tree(repo.load_tree_blob(tree_id), f"tree {tree_id[:12]}")


def walk(repo: Repository, tree_id: str, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every (relative path, node) below a tree, parents before children, sorted by name."""
    for node in load_tree(repo, tree_id):
        path = f"{prefix}/{node.name}" if prefix else node.name
        yield path, node
        if node.type == DIR and node.subtree:
            yield from walk(repo, node.subtree, path)


def find(repo: Repository, tree_id: str, path: str) -> Node | None:
    """The node at a relative path, or None."""
    parts = [p for p in path.strip("/").split("/") if p]
    node: Node | None = Node("", DIR, 0, 0, subtree=tree_id)
    for part in parts:
        if node is None or node.type != DIR or not node.subtree:
            return None
        node = next((n for n in load_tree(repo, node.subtree) if n.name == part), None)
    return node
