"""The staging manifest: what each staged file was copied from, on disk and in memory.

The manifest remembers, for every staged entry, the source's metadata when it was
copied, so a pass re-copies only what changed. It is a cache, never the truth: a
manifest that is missing, damaged, of another source or of another boot (staged
files are not fsynced) is discarded and staging starts over, and one that is read
back is checked against the staged files (the Stager's sweep) before it is trusted.

A manifest entry is a list (compact JSON, cheap to compare). Kinds and fields:
  "f" regular file:  [kind, size, mtime_ns, ctime_ns, ino, copy_start_ns, staged_ino]
  "s" SQLite db:     the same, + the -wal's [size, mtime_ns, ino] or None
  "l" symlink:       [kind, target, mtime_ns]
  "d" directory:     [kind, mode, mtime_ns]  (source's; -1 until first set)
Sizes, times and inodes are the *source's*, taken before the copy began.
"""

from __future__ import annotations

import json
import os

from cleancut import jsonparse
from cleancut.fsio.safeio import create_temp, unlink_quietly, write_all

MANIFEST_VERSION = 1
FILE, DB, LINK, DIR = "f", "s", "l", "d"
_SIZE, _MTIME, _CTIME, _INO, _COPIED, _STAGED, _WAL = 1, 2, 3, 4, 5, 6, 7

Entry = list  # one manifest entry, as above
Listing = dict[str, Entry]  # the entries of one staged directory, by name


def boot_id() -> str:
    """This boot's id. Staged files are not fsynced (staging is a cache), so after a
    crash their data may be gone while the manifest survives: a new boot starts over."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def read_manifest(path: str, source: str, boot: str) -> tuple[Entry | None, dict[str, Listing]]:
    """Read and validate the manifest at `path`; OSError or ValueError if unusable."""
    with open(path, "rb") as f:
        data = jsonparse.loads(f.read())
    return parse_manifest(data, source, boot)


def is_ours(path: str) -> bool:
    """Whether `path` holds a manifest an older cleancut wrote (a staging directory
    from before the marker existed)."""
    try:
        with open(path, "rb") as f:
            data = jsonparse.loads(f.read())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("version") == MANIFEST_VERSION
        and {"source", "boot_id", "root", "dirs"} <= data.keys()
    )


def encode(
    source: str, boot: str, root: Entry | None, dirs: dict[str, Listing], cache: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """The manifest's bytes. `cache` holds each directory's listing already encoded
    (dropped when it changes): a pass that copies a few files re-encodes a few
    directories, not the whole manifest. Returns the bytes and the new cache."""
    encoded: dict[str, str] = {}
    parts = []
    for rel, listing in dirs.items():
        text = cache.get(rel)
        if text is None:
            text = json.dumps(listing, separators=(",", ":"), check_circular=False)
        encoded[rel] = text
        parts.append(f"{json.dumps(rel)}:{text}")
    head = json.dumps(
        {"version": MANIFEST_VERSION, "source": source, "boot_id": boot, "root": root},
        separators=(",", ":"),
    )
    return f'{head[:-1]},"dirs":{{{",".join(parts)}}}}}'.encode(), encoded


def write_atomically(directory: str, name: str, blob: bytes) -> None:
    """Write `directory/name` whole: temp, fsync, rename. The temporary name is random and
    created exclusively: a guessable name could hold a symlink that O_TRUNC writes through."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd, tmp = create_temp(dir_fd, (name,), ".tmp")
        try:
            try:
                write_all(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            unlink_quietly(tmp, dir_fd)
            raise
    finally:
        os.close(dir_fd)


def _is_int(value: object) -> bool:
    return type(value) is int


def parse_manifest(
    data: object, source: str, boot: str
) -> tuple[Entry | None, dict[str, Listing]]:
    """Validate a manifest read from disk; ValueError if anything is off."""
    try:
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise ValueError("unknown manifest version")
        if data.get("source") != source or data.get("boot_id") != boot:
            raise ValueError("manifest of another source or boot")
        root = data["root"]
        if root is not None and not valid_entry(root):
            raise ValueError("bad root entry")
        dirs = data["dirs"]
    except KeyError as exc:
        raise ValueError(f"manifest lacks {exc}") from None
    if not isinstance(dirs, dict) or "" not in dirs:
        raise ValueError("bad directory table")
    for rel, listing in dirs.items():
        if not isinstance(rel, str) or not isinstance(listing, dict):
            raise ValueError("bad directory table")
        for name, entry in listing.items():
            if not name or name in (".", "..") or "/" in name or "\0" in name:
                raise ValueError(f"bad name {name!r}")
            if not valid_entry(entry):
                raise ValueError(f"bad entry for {name!r}")
    return root, dirs


def valid_entry(entry: object) -> bool:
    if not isinstance(entry, list) or not entry:
        return False
    kind = entry[0]
    if kind == FILE:
        return len(entry) == 7 and all(_is_int(v) for v in entry[1:])
    if kind == DB:
        if len(entry) != 8 or not all(_is_int(v) for v in entry[1:7]):
            return False
        wal = entry[_WAL]
        return wal is None or (isinstance(wal, list) and len(wal) == 3 and all(map(_is_int, wal)))
    if kind == LINK:
        return len(entry) == 3 and isinstance(entry[1], str) and _is_int(entry[2])
    if kind == DIR:
        return len(entry) == 3 and _is_int(entry[1]) and _is_int(entry[2])
    return False
