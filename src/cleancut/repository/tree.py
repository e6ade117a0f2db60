"""Trees: one blob per directory, listing its entries.

A tree blob is canonical JSON: {"nodes": [node, ...]} sorted by name. Equal
directories give equal bytes and so the same blob ID: an unchanged directory
costs nothing in the next snapshot. File names are stored as Python decodes
them from the filesystem (UTF-8 with surrogate escapes), so any byte name
survives the round trip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cleancut import jsonparse
from cleancut.errors import IntegrityError

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
NODE_TYPES = (FILE, DIR, SYMLINK)

_INT64 = (-(1 << 63), (1 << 63) - 1)
# Nanoseconds whose seconds fit a 64-bit time_t (a file can be dated past 2262).
_TIME_NS = (_INT64[0] * 10**9, _INT64[1] * 10**9 + 999_999_999)
# What each integer field may hold: what the system calls restore makes accept.
_RANGES: dict[str, tuple[int, int]] = {
    "mode": (0, 0o7777),  # permission bits: the type is the node's type
    "mtime_ns": _TIME_NS,
    "uid": (0, (1 << 32) - 2),  # (1 << 32) - 1 is -1: "leave as is"
    "gid": (0, (1 << 32) - 2),
    "size": (0, _INT64[1]),
    "ctime_ns": _TIME_NS,
    "inode": (0, (1 << 64) - 1),
}
_REQUIRED = ("mode", "mtime_ns")


def _field(raw: dict[str, Any], key: str, name: object) -> int:
    if key not in raw and key not in _REQUIRED:
        return 0
    value = raw[key]
    low, high = _RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"node {name!r}: {key} {value!r} is out of range")
    return value


_ID = re.compile("[0-9a-f]{64}")


def _is_id(value: object) -> bool:
    """A blob id as trees write it: 64 lowercase hex digits (one regex match, not a loop
    per character: a restore checks every blob id of every tree)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


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
        """A node from its JSON form; ValueError for a field of the wrong type or out of
        the range a filesystem can hold (a forged tree must not reach a system call)."""
        name, kind = raw["name"], raw["type"]
        if kind not in NODE_TYPES or not isinstance(name, str):
            raise ValueError(f"bad node {name!r} of type {kind!r}")
        content = raw.get("content", [])
        if not isinstance(content, list) or not all(_is_id(b) for b in content):
            raise ValueError(f"node {name!r}: content is not a list of blob ids")
        subtree, target = raw.get("subtree"), raw.get("target")
        if not (subtree is None or _is_id(subtree)) or not (
            target is None or isinstance(target, str)
        ):
            raise ValueError(f"node {name!r}: bad subtree or symlink target")
        return cls(
            name=name,
            type=kind,
            content=content,
            subtree=subtree,
            target=target,
            **{key: _field(raw, key, name) for key in _RANGES},
        )


def encode_tree(nodes: list[Node]) -> bytes:
    ordered = sorted(nodes, key=lambda n: n.name)
    doc = {"nodes": [n.to_json() for n in ordered]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def decode_tree(data: bytes, what: str) -> list[Node]:
    try:
        doc = jsonparse.loads(data)
        return [Node.from_json(raw) for raw in doc["nodes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{what} is not a valid tree ({_first_line(exc)})") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()
    return text[0][:200] if text else type(exc).__name__
