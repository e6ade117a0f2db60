"""A snapshot's state: every path it holds, with its node.

A full snapshot stores its state as trees; an incremental stores a delta
manifest against its parent (entries added or changed, paths deleted), so its
cost grows with the change, not with the workspace. Replaying a chain from
its full through every delta gives the state of any snapshot in it.

Delta manifest (a blob of type DELTA, canonical JSON):
    {"version": 1, "changed": [{"path": "a/b", "node": {...}}, ...], "deleted": ["x/y", ...]}
`changed` is sorted by path; a changed directory carries no subtree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cleancut import jsonparse
from cleancut.errors import IntegrityError

from .repository import Repository
from .tree import DIR, FILE, Node
from .walk import load_tree

State = dict[str, Node]  # relative path -> node; the root itself is not in it


@dataclass
class Delta:
    changed: dict[str, Node] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        doc = {
            "version": 1,
            "changed": [{"path": p, "node": _strip(n)} for p, n in sorted(self.changed.items())],
            "deleted": sorted(self.deleted),
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=True, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes, what: str) -> Delta:
        try:
            doc = jsonparse.loads(data)
            changed = {item["path"]: Node.from_json(item["node"]) for item in doc["changed"]}
            deleted = [str(p) for p in doc["deleted"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{what} is not a valid delta manifest") from exc
        return cls(changed, deleted)


def _strip(node: Node) -> dict[str, object]:
    raw = node.to_json()
    if node.type == DIR:
        raw.pop("subtree", None)  # a state's directories are known by their paths
    return raw


@dataclass
class Claims:
    """How many directories (the root included) and files a full snapshot's record says
    its trees hold. Equal directories share one tree, so a forged tree can name one
    subtree at every level: the walk stops where the claim is exceeded, not at 2**depth."""

    dirs: int = 1 << 18  # for a record that claims nothing (backup always writes both)
    files: int = 1 << 22

    @classmethod
    def of(cls, summary: dict[str, object]) -> Claims:
        claims = cls()
        for key in ("dirs", "files"):
            value = summary.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(claims, key, value)
        return claims


def tree_state(
    repo: Repository,
    tree_id: str,
    problems: list[str] | None = None,
    claims: Claims | None = None,
) -> State:
    """Flatten a full snapshot's trees. Entries that cannot be paths are left out and,
    when `problems` is given, named there (restore refuses them). More directories or
    files than `claims` allows is damage (IntegrityError), found before anything is
    written."""
    claims = claims or Claims()
    state: State = {}
    trees: dict[str, list[Node]] = {}  # each tree is read and decoded once
    dirs, files = 1, 0
    stack = [("", tree_id)]
    while stack:
        prefix, tid = stack.pop()
        seen: set[str] = set()
        nodes = trees.get(tid)
        if nodes is None:
            nodes = trees[tid] = load_tree(repo, tid)
        for node in nodes:
            shown = f"{prefix}/{node.name}" if prefix else node.name
            reason = unsafe_name(node.name)
            if reason is None and node.name in seen:
                reason = "name appears twice in its directory"
            if reason is not None:
                if problems is not None:
                    problems.append(f"{shown!r}: {reason}")
                continue
            seen.add(node.name)
            state[shown] = node
            if node.type == FILE:
                files += 1
                if files > claims.files:
                    raise _over_claim(claims.files, "files")
            elif node.type == DIR:
                dirs += 1
                if dirs > claims.dirs:
                    raise _over_claim(claims.dirs, "directories")
                if node.subtree:
                    stack.append((shown, node.subtree))
    return state


def _over_claim(claimed: int, what: str) -> IntegrityError:
    return IntegrityError(
        f"the snapshot's trees hold more than the {claimed} {what} its record claims "
        "(a tree reused where the source had none): refusing to walk them"
    )


def unsafe_name(name: str) -> str | None:
    """Why a name must not be used as a path component, or None."""
    if name in ("", ".", ".."):
        return "name is empty, '.' or '..'"
    if "/" in name or "\0" in name:
        return "name contains '/' or NUL"
    if not encodable(name):
        return "name holds a character no file name can (a lone surrogate)"
    return None


def encodable(text: str) -> bool:
    """Whether `text` turns into bytes the way file names do (UTF-8, surrogate escapes)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def unsafe_path(path: str) -> str | None:
    for part in path.split("/"):
        reason = unsafe_name(part)
        if reason is not None:
            return reason
    return None


def apply_delta(state: State, delta: Delta, problems: list[str] | None = None) -> None:
    """Apply one incremental's changes in place: deletions (with everything below), then
    additions and changes."""
    for path in delta.deleted:
        state.pop(path, None)
        prefix = path + "/"
        for key in [k for k in state if k.startswith(prefix)]:
            del state[key]
    for path, node in delta.changed.items():
        reason = unsafe_path(path)
        if reason is None and node.name != path.rpartition("/")[2]:
            # Restore creates an entry by its name: a name that is not the path's last
            # component (say "../x") would put it somewhere the path does not say.
            reason = f"entry name {node.name!r} does not match its path"
        if reason is not None:
            if problems is not None:
                problems.append(f"{path!r}: {reason}")
            continue
        old = state.get(path)
        if old is not None and old.type == DIR and node.type != DIR:
            prefix = path + "/"
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
        state[path] = node


def diff_states(old: State, new: State) -> Delta:
    """What changed from old to new: the delta an incremental stores."""
    delta = Delta()
    for path, node in new.items():
        before = old.get(path)
        if before is node:  # an unchanged file's node is carried over as is
            continue
        if before is None or not same_node(before, node):
            delta.changed[path] = node
    gone = [p for p in old if p not in new]
    gone_set = set(gone)
    # Deleting a directory deletes what is below it: name only the top of each deleted subtree.
    delta.deleted = [p for p in gone if p.rpartition("/")[0] not in gone_set]
    return delta


def same_node(a: Node, b: Node) -> bool:
    if a.type != b.type:
        return False
    if a.type == DIR:
        return (a.mode, a.mtime_ns, a.uid, a.gid) == (b.mode, b.mtime_ns, b.uid, b.gid)
    return _strip(a) == _strip(b)


def referenced_by_state(state: State) -> set[bytes]:
    return {bytes.fromhex(b) for n in state.values() if n.type == FILE for b in n.content}
