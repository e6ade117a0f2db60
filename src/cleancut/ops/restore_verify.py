"""A restore test's `verify` step: the restored tree against the snapshot's state, from disk.

Every path of the state must exist with its type, every symlink with its target,
and every file, read back in the pieces the snapshot records (each blob's length,
from the index; re-chunked with the repository's own parameters where a blob is not
indexed) and hashed with its ID key, must give exactly the blob ids and size the
snapshot records (a file that only grew keeps its old blobs and stores its tail, so
its boundaries need not be content-defined: decision 0009): the bytes on disk are
compared with what the backup read, end to end, without trusting anything the restore
code reported. Nothing else may be there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cleancut.fsio.treewalk import walk
from cleancut.repository.chunker import chunk_fd
from cleancut.repository.repository import Repository
from cleancut.repository.state import State
from cleancut.repository.tree import DIR, FILE, SYMLINK


def verify_tree(repo: Repository, state: State, root: Path) -> tuple[list[str], str]:
    """Every path of the state exists with its type; files re-chunk to their blob ids.

    Re-chunking with the repository's own parameters and hashing with its ID key
    compares the bytes on disk with what the backup read, end to end, without
    trusting anything the restore code reported.
    """
    problems: list[str] = []
    checked = 0
    for rel in sorted(state):
        node = state[rel]
        path = root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        except OSError as exc:
            problems.append(f"{rel}: cannot stat ({exc.strerror})")
            continue
        if node.type == DIR and not stat.S_ISDIR(st.st_mode):
            problems.append(f"{rel}: not a directory")
        elif node.type == SYMLINK:
            if not stat.S_ISLNK(st.st_mode):
                problems.append(f"{rel}: not a symlink")
            elif os.readlink(path) != (node.target or ""):
                problems.append(f"{rel}: symlink target differs")
        elif node.type == FILE:
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
                continue
            problem = _verify_file(repo, path, node.content, node.size)
            if problem:
                problems.append(f"{rel}: {problem}")
        checked += 1
    extra = sorted(set(_walk(root)) - set(state))
    problems += [f"{rel}: not in the snapshot" for rel in extra]
    return problems, f"{checked} of {len(state)} entries match the snapshot"


def _verify_file(repo: Repository, path: Path, content: list[str], size: int) -> str | None:
    try:
        fd = _open_for_reading(path)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    try:
        ids: list[str] = []
        total = 0
        lengths = _blob_lengths(repo, content)
        pieces = chunk_fd(fd, repo.config.chunker, size) if lengths is None else (
            _pieces(fd, lengths))
        for chunk in pieces:
            ids.append(repo.keys.blob_id(chunk).hex())
            total += len(chunk)
        if lengths is not None and os.read(fd, 1):
            return "larger than the recorded size"
    finally:
        os.close(fd)
    if total != size:
        return f"size {total} differs from the recorded {size}"
    if ids != content:
        bad = next((i for i, (a, b) in enumerate(zip(ids, content, strict=False)) if a != b), None)
        where = f"chunk {bad}" if bad is not None else "chunk count"
        return f"content differs from the snapshot ({where})"
    return None


def _blob_lengths(repo: Repository, content: list[str]) -> list[int] | None:
    """Each blob's plaintext length, from the index; None when one is not indexed."""
    lengths = []
    for blob in content:
        loc = repo.find_blob(bytes.fromhex(blob))
        if loc is None:
            return None
        lengths.append(loc.entry.raw_length)
    return lengths


def _pieces(fd: int, lengths: list[int]) -> Iterator[bytes]:
    """The file read in pieces of these lengths (the last ones short if it is)."""
    for length in lengths:
        parts, left = [], length
        while left:
            part = os.read(fd, min(left, 1 << 20))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        yield b"".join(parts)
        if left:
            return


def _open_for_reading(path: Path) -> int:
    """Open a restored file even when its recorded mode denies reading to its owner
    (the sandbox is ours; the mode is put back at once)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        mode = stat.S_IMODE(path.lstat().st_mode)
        os.chmod(path, mode | stat.S_IRUSR)
        try:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        finally:
            os.chmod(path, mode)


def _walk(root: Path) -> Iterator[str]:
    for level in walk(root):
        for name in level.dirs + level.files:
            yield f"{level.rel}/{name}" if level.rel else name
