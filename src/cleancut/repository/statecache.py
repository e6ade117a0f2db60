"""The newest snapshot's state, kept in the local cache for the next backup.

A backup compares every file with the previous snapshot of its source. Rebuilding
that state means reading every tree of the chain's full and every delta since:
thousands of blob reads, growing with the chain. The backup that wrote a snapshot
already holds its state, so it leaves a copy here; the next backup uses it when it
names that very snapshot, and replays the chain otherwise. Like the rest of the
cache it is never the truth: the chain's links are still verified, a missing or
unreadable copy only costs the replay, and restore never uses it.

Format (a local cache, not part of the repository; docs/decisions/0011): the line
MAGIC, the snapshot id on a line of its own, then one zstd frame with a content
checksum holding `marshal` data: [(path, type, mode, mtime_ns, uid, gid, size,
ctime_ns, inode, content, subtree, target), ...]. Plain tuples load about ten times
faster than the JSON of version 1, whose nodes were validated one by one; a file of
another version (or any file that does not decode) reads as missing, and the backup
that finds it replays the chain and writes this version. A backup that changed
nothing relabels the copy (a new id line before the same body) instead of encoding
the state again. marshal holds only plain values (it runs
no code on load), and the cache directory is the owner's alone (0700), like the
SQLite index beside it, which is trusted the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from pathlib import Path

import zstandard

from .state import State
from .tree import Node

MAGIC = b"cleancut state cache 2\n"


def _path(cache_dir: Path, source: str) -> Path:
    return cache_dir / f"state-{_digest(source)}.zst"


def _legacy_path(cache_dir: Path, source: str) -> Path:
    """Where version 1 (JSON) was kept; removed once version 2 is written."""
    return cache_dir / f"state-{_digest(source)}.json.zst"


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def save_state(cache_dir: Path, source: str, snapshot_id: str, state: State) -> None:
    rows = [
        (p, n.type, n.mode, n.mtime_ns, n.uid, n.gid, n.size, n.ctime_ns, n.inode, n.content,
         n.subtree, n.target)
        for p, n in state.items()
    ]
    body = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(marshal.dumps(rows))
    _write(cache_dir, source, snapshot_id, body)


def relabel_state(cache_dir: Path, source: str, old_id: str, new_id: str) -> bool:
    """Name `new_id` in the copy that names `old_id`, its state unchanged (a backup that
    found nothing changed); False, writing nothing, if the copy names another snapshot
    or cannot be read."""
    try:
        data = _path(cache_dir, source).read_bytes()
    except OSError:
        return False
    split = _split(data)
    if split is None or split[0] != old_id:
        return False
    _write(cache_dir, source, new_id, split[1])
    return True


def _write(cache_dir: Path, source: str, snapshot_id: str, body: bytes) -> None:
    target = _path(cache_dir, source)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a replay
        tmp.write_bytes(MAGIC + snapshot_id.encode("utf-8", "surrogateescape") + b"\n" + body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        _legacy_path(cache_dir, source).unlink(missing_ok=True)


def _split(data: bytes) -> tuple[str, bytes] | None:
    """The snapshot id and the compressed body of a copy of this version, or None."""
    if not data.startswith(MAGIC):
        return None
    line, newline, body = data[len(MAGIC):].partition(b"\n")
    if not newline:
        return None
    return line.decode("utf-8", "surrogateescape"), body


def load_state(cache_dir: Path, source: str, snapshot_id: str) -> State | None:
    try:
        split = _split(_path(cache_dir, source).read_bytes())
        if split is None or split[0] != snapshot_id:
            return None
        # One whole frame (its size is in its header): a truncated file is an error.
        rows = marshal.loads(zstandard.ZstdDecompressor().decompress(split[1]))
        return {
            p: Node(p.rpartition("/")[2], kind, mode, mtime, uid, gid, size, ctime, inode,
                    content, subtree, target)
            for p, kind, mode, mtime, uid, gid, size, ctime, inode, content, subtree, target
            in rows
        }
    except (OSError, ValueError, EOFError, TypeError, zstandard.ZstdError):
        return None
