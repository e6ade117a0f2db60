"""Trees: one blob per directory, listing its entries.

A tree blob is canonical JSON: {"nodes": [node, ...]} sorted by name. Equal
directories give equal bytes and so the same blob ID: an unchanged directory
costs nothing in the next snapshot. File names are stored as Python decodes
them from the filesystem (UTF-8 with surrogate escapes), so any byte name
survives the round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
NODE_TYPES = (FILE, DIR, SYMLINK)


@dataclass
class Node:
    name: str
    type: str
    mode: int
    mtime_ns: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    ctime_ns: int = 0
    inode: int = 0
    content: list[str] = field(default_factory=list)  # blob ids (hex) of a file, in order
    subtree: str | None = None  # tree blob id (hex) of a directory
    target: str | None = None  # symlink target

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "mode": self.mode,
            "mtime_ns": self.mtime_ns,
            "uid": self.uid,
            "gid": self.gid,
        }
        if self.type == FILE:
            out.update(
                size=self.size, ctime_ns=self.ctime_ns, inode=self.inode, content=self.content
            )
        elif self.type == DIR:
            out["subtree"] = self.subtree
        else:
            out["target"] = self.target
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Node:
        node = cls(
            name=raw["name"],
            type=raw["type"],
            mode=int(raw["mode"]),
            mtime_ns=int(raw["mtime_ns"]),
            uid=int(raw.get("uid", 0)),
            gid=int(raw.get("gid", 0)),
            size=int(raw.get("size", 0)),
            ctime_ns=int(raw.get("ctime_ns", 0)),
            inode=int(raw.get("inode", 0)),
            content=list(raw.get("content", [])),
            subtree=raw.get("subtree"),
            target=raw.get("target"),
        )
        if node.type not in NODE_TYPES or not isinstance(node.name, str):
            raise ValueError(f"bad node {node.name!r} of type {node.type!r}")
        return node


def encode_tree(nodes: list[Node]) -> bytes:
    ordered = sorted(nodes, key=lambda n: n.name)
    doc = {"nodes": [n.to_json() for n in ordered]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def decode_tree(data: bytes, what: str) -> list[Node]:
    try:
        doc = json.loads(data)
        return [Node.from_json(raw) for raw in doc["nodes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{what} is not a valid tree") from exc
