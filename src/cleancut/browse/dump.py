"""`dump`: one file of a snapshot to a stream, or a directory as a tar stream.

A file is written as its bytes, blob by blob (content.py: a few MiB of memory, whatever
its size). A directory (the snapshot's root for '/' or '') is a POSIX (pax) tar
stream, written as it is read: directories, files and symlinks with their modes,
owners and modification times (nanoseconds kept in pax headers). A symlink alone is a
tar of that one link. Member names are the entries' paths below the directory, under
the directory's own name; each is checked again here, so no member is absolute, holds
'..' or an empty component, whatever a forged tree or delta says (such an entry is
left out and named in the outcome: exit 5). Data that fails verification stops the
stream with IntegrityError (exit 4): what was written is a truncated tar, never one
that holds wrong bytes.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from typing import IO, Any

from cleancut.errors import ExitCode, NotInSnapshot
from cleancut.repository.chain import snapshot_state
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.state import State, unsafe_name
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node

from .content import BlobCache, ContentStream, FileContent

COPY_PIECE = 1 << 20


@dataclass
class DumpOutcome:
    snapshot: Snapshot
    path: str
    kind: str  # "file" (its bytes) or "tar"
    files: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)  # entries left out of the tar

    @property
    def exit_code(self) -> int:
        return ExitCode.UNSAFE_ENTRY if self.refused else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.id,
            "path": self.path,
            "kind": self.kind,
            "files": self.files,
            "bytes": self.bytes,
            "refused": self.refused,
        }


def dump_path(repo: Repository, snapshot: Snapshot, path: str, out: IO[bytes]) -> DumpOutcome:
    refused: list[str] = []
    state = snapshot_state(repo, snapshot, refused)
    rel = path.strip("/")
    node = state.get(rel) if rel else None
    if rel and node is None:
        raise NotInSnapshot(f"no {rel!r} in snapshot {snapshot.id[:12]}")
    cache = BlobCache(repo)
    if node is not None and node.type == FILE:
        outcome = DumpOutcome(snapshot, rel, "file", refused=refused)
        stream = ContentStream(FileContent(repo, cache, node, rel))
        while piece := stream.read(COPY_PIECE):
            out.write(piece)
            outcome.bytes += len(piece)
        outcome.files = 1
        out.flush()
        return outcome
    outcome = DumpOutcome(snapshot, rel, "tar", refused=refused)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in _members(state, rel, node, refused):
            _add(tar, repo, cache, name, entry, outcome)
    out.flush()
    return outcome


def _members(
    state: State, rel: str, node: Node | None, refused: list[str]
) -> list[tuple[str, Node]]:
    """(member name, node) in path order, parents first: the entry itself under its own
    name, then everything below it. The root's entries have no prefix."""
    top = rel.rpartition("/")[2]
    members: list[tuple[str, Node]] = [(top, node)] if node is not None else []
    if node is not None and node.type != DIR:
        return members
    prefix = rel + "/" if rel else ""
    below = sorted((p for p in state if p.startswith(prefix)), key=lambda p: p.split("/"))
    for path in below:
        name = f"{top}/{path[len(prefix) :]}" if top else path[len(prefix) :]
        reason = next((r for r in map(unsafe_name, name.split("/")) if r), None)
        if reason is not None:
            refused.append(f"{path!r}: {reason}")
            continue
        members.append((name, state[path]))
    return members


def _add(
    tar: tarfile.TarFile,
    repo: Repository,
    cache: BlobCache,
    name: str,
    node: Node,
    outcome: DumpOutcome,
) -> None:
    info = tarfile.TarInfo(name)
    info.mode = node.mode
    info.uid, info.gid = node.uid, node.gid
    info.mtime = node.mtime_ns / 1e9
    if node.mtime_ns >= 0:  # nanoseconds exactly (a float holds microseconds)
        info.pax_headers = {"mtime": _pax_time(node.mtime_ns)}
    if node.type == DIR:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif node.type == SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = node.target or ""
        tar.addfile(info)
    else:
        info.size = node.size
        tar.addfile(info, ContentStream(FileContent(repo, cache, node, name)))  # type: ignore[arg-type]
        outcome.files += 1
        outcome.bytes += node.size


def _pax_time(ns: int) -> str:
    seconds, rest = divmod(ns, 10**9)
    return f"{seconds}.{rest:09d}"
