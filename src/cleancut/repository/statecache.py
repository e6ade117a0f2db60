"""The newest snapshot's state, kept in the local cache for the next backup.

A backup compares every file with the previous snapshot of its source. Rebuilding
that state means reading every tree of the chain's full and every delta since:
thousands of blob reads, growing with the chain. The backup that wrote a snapshot
already holds its state, so it leaves a copy here; the next backup uses it when it
names that very snapshot, and replays the chain otherwise. Like the rest of the
cache it is never the truth: the chain's links are still verified, a missing or
unreadable copy only costs the replay, and restore never uses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import zstandard

from cleancut import jsonparse

from .state import State
from .tree import Node


def _path(cache_dir: Path, source: str) -> Path:
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache_dir / f"state-{digest}.json.zst"


def save_state(cache_dir: Path, source: str, snapshot_id: str, state: State) -> None:
    doc = {"snapshot": snapshot_id, "nodes": [[p, n.to_json()] for p, n in state.items()]}
    data = zstandard.ZstdCompressor(level=1).compress(json.dumps(doc).encode())
    target = _path(cache_dir, source)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a replay
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)


def load_state(cache_dir: Path, source: str, snapshot_id: str) -> State | None:
    try:
        raw = (
            zstandard.ZstdDecompressor()
            .decompressobj()
            .decompress(_path(cache_dir, source).read_bytes())
        )
        doc = jsonparse.loads(raw)
        if doc.get("snapshot") != snapshot_id:
            return None
        return {p: Node.from_json(n) for p, n in doc["nodes"]}
    except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError):
        return None
