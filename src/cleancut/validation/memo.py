"""The last capture check's verdicts by file metadata, kept in the local cache.

A capture check must not read a file that has not changed since the previous one
(a big workspace changes a few files between backups). What it found is kept
here, per source: for every regular file of the checked tree, its metadata (size,
mtime, ctime, inode), the format it was checked as (or none) and the problem
found (or none). The staged tree is cleancut's own: a staged file whose metadata
is unchanged holds the bytes it held, so the verdict still holds, except for a
file changed within a timestamp tick of the check (the racy window), which is
checked again.

Like the rest of the cache it is never the truth: a missing, damaged or foreign
memo (other rules, another tree) costs one check of every file. What a snapshot
promises is in its record (repository/verdicts.py), not here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from cleancut import jsonparse
from cleancut.fsio.racy import is_racy
from cleancut.repository.verdicts import Stat

from .formats import JSONL

VERSION = 1


@dataclass(frozen=True)
class Remembered:
    """One file as last checked: kind None means it was not checked (no format)."""

    kind: str | None
    stat: Stat
    problem: str | None = None
    was_valid: bool = False


@dataclass
class Memo:
    rules: str
    tree: str
    made_ns: int = 0  # wall clock when the check began: entries changed after it are racy
    files: dict[str, Remembered] = field(default_factory=dict)

    def get(self, rel: str, st: Stat) -> Remembered | None:
        """The verdict on exactly this content of `rel`, or None."""
        found = self.files.get(rel)
        if found is None or found.stat != st:
            return None
        if is_racy(found.stat[2], self.made_ns):  # ctime within a tick of the check
            return None
        return found


    def prefix(self, rel: str, st: Stat) -> Remembered | None:
        """The verdict on the first bytes of `rel` when it only grew since it was judged
        valid as JSONL: same inode, larger size, and not judged within the racy window.
        Staging changes a staged file's bytes in place only by appending a tail (a rewrite
        is a new file under a new inode, hot/stage.py), so those first bytes are the
        ones judged."""
        found = self.files.get(rel)
        if found is None or found.kind != JSONL or found.problem is not None:
            return None
        if found.stat[3] != st[3] or st[0] <= found.stat[0]:
            return None
        if is_racy(found.stat[2], self.made_ns):
            return None
        return found


def _path(cache_dir: Path, source: str) -> Path:
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache_dir / f"verdicts-{digest}.json.zst"


def load_memo(cache_dir: Path, source: str, rules: str, tree: Path) -> Memo | None:
    """The source's memo, if it was made under these rules for this tree."""
    try:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(
            _path(cache_dir, source).read_bytes()
        )
        doc = jsonparse.loads(raw)
        if doc.get("version") != VERSION or doc.get("rules") != rules:
            return None
        if doc.get("tree") != str(tree):
            return None
        files = {
            rel: Remembered(kind, (size, mtime, ctime, ino), problem, bool(was_valid))
            for rel, (kind, size, mtime, ctime, ino, problem, was_valid) in doc["files"].items()
        }
        return Memo(rules, str(tree), int(doc["made_ns"]), files)
    except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError):
        return None


def save_memo(cache_dir: Path, source: str, memo: Memo) -> None:
    doc = {
        "version": VERSION,
        "rules": memo.rules,
        "tree": memo.tree,
        "made_ns": memo.made_ns,
        "files": {
            rel: [r.kind, *r.stat, r.problem, r.was_valid] for rel, r in memo.files.items()
        },
    }
    data = zstandard.ZstdCompressor(level=1).compress(json.dumps(doc).encode())
    target = _path(cache_dir, source)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a memo that cannot be written costs a full check
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
