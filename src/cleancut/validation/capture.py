"""Checking a capture's files after the agent resumed, and noticing what tore.

A hot backup's pause ends before anything here runs: the staged tree is stable
(the staging lock is held until the snapshot is stored), so its JSON, JSONL and
SQLite files can be checked at leisure (validation/formats.py, the source's
`validate` rules) and the result goes into the snapshot record
(repository/verdicts.py).

Only what changed is checked. The previous check's verdicts are remembered by
file metadata in the local cache (validation/memo.py); a staged file whose
size, mtime, ctime and inode are unchanged holds the bytes that were judged and
inherits the verdict, unread. Without the memo (a new cache, other rules)
every file is checked once: slower, never wrong.

Two shortcuts keep the check from redoing work. A JSONL file that was valid at
the last check and only grew since (same staged inode, larger: staging appends
its new tail, hot/stage.py) is read from the line its new bytes begin in, not
from byte 0; the capture record lists it (`tail_checked`). A staged database
whose `integrity_check` the stage's own verification just ran (same path and
metadata) takes that result instead of a second run (`sqlite_shared`).

A file that was valid in the parent snapshot and is not now is *regressed*:
in a `quiesced` snapshot, where the agent promised that everything it wrote
was whole, that is a consistency warning at backup time (exit 3, one line
naming the file) and a warning in `status` (ops/health.py) while the
source's newest snapshot still holds it. The snapshot is still stored: the
warning says what the cut holds; losing the cut would help nobody. "Valid in
the parent" is read from the parent's record (a file it does not list as
invalid) and, only for a file found invalid now, from the parent's state (the
local state cache, else the chain replayed).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cleancut.archiver.excludes import is_excluded
from cleancut.archiver.policy import latest_of
from cleancut.errors import CleancutError
from cleancut.fsio.treewalk import walk
from cleancut.repository.chain import snapshot_state
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.sourcedirs import Source
from cleancut.repository.state import State
from cleancut.repository.statecache import load_state
from cleancut.repository.tree import FILE
from cleancut.repository.verdicts import MAX_LISTED, Invalid, Stat, Verdicts

from .formats import JSONL, SQLITE, check, check_jsonl_from, has_sqlite_header, sqlite_problem
from .memo import Memo, Remembered, load_memo, save_memo
from .rules import BY_HEADER, Rules

MAX_WARNED = 5  # regressed files named one per line; the rest counted in one more
MAX_LISTED_TAILS = 20  # tail-checked files named in the capture record


# Staged path -> ((size, mtime, ctime, inode) when checked, integrity_check's problems).
SqliteResults = dict[str, tuple[Stat, list[str]]]


@dataclass
class CaptureCheck:
    verdicts: Verdicts
    warnings: list[str] = field(default_factory=list)
    tail_checked: list[str] = field(default_factory=list)  # JSONL read from their tail
    sqlite_shared: int = 0  # databases judged by the stage's own integrity_check

    def record(self) -> dict[str, object]:
        """What the capture record says of how the check went."""
        return {
            "tail_checked": len(self.tail_checked),
            "tail_checked_files": self.tail_checked[:MAX_LISTED_TAILS],
            "sqlite_shared": self.sqlite_shared,
        }


class _Parent:
    """What the parent snapshot says of a file that is invalid now: was it valid there?
    Its verdicts count only when made under the same rules; its state is read only when
    asked (from the cache, else by replaying its chain)."""

    def __init__(self, repo: Repository, name: str, rules: Rules) -> None:
        self.repo = repo
        self.name = name
        self.snapshot: Snapshot | None = latest_of(repo.snapshots(), name)
        found = Verdicts.from_json(self.snapshot.validation) if self.snapshot else None
        self.verdicts = found if found is not None and found.rules == rules.digest else None
        self._state: State | None = None

    def before(self, rel: str, kind: str) -> Invalid | str | None:
        """The parent's verdict on `rel`, whatever its content then: an Invalid, "valid",
        or None when unknown (no verdicts, not in the parent, not listed past the limit)."""
        if self.verdicts is None:
            return None
        entry = self.verdicts.files.get(rel)
        if entry is not None:
            return entry if entry.kind == kind else None
        if self.verdicts.invalid > len(self.verdicts.files):
            return None
        node = self.state().get(rel)
        return "valid" if node is not None and node.type == FILE else None

    def state(self) -> State:
        if self._state is None:
            self._state = {}
            snap = self.snapshot
            if snap is not None:
                cached = load_state(self.repo.local_dir, self.name, snap.id)
                if cached is not None:
                    self._state = cached
                else:  # a parent that cannot be read: nothing is known of it
                    with contextlib.suppress(CleancutError):
                        self._state = snapshot_state(self.repo, snap)
        return self._state


def check_capture(
    repo: Repository,
    name: str,
    tree: Source,
    rules: Rules,
    excludes: list[str],
    consistency: str,
    sqlite_checked: SqliteResults | None = None,
) -> CaptureCheck:
    """Check the captured `tree` of source `name`; warn of regressed files when the
    capture is `quiesced`. `sqlite_checked`: integrity_check results already found for
    staged databases (by path and metadata), used instead of checking them again."""
    result = CaptureCheck(Verdicts(rules=rules.digest))
    ctx = _Context(rules, _Parent(repo, name, rules), result, sqlite_checked or {})
    cache_dir = repo.local_dir
    key = _tree_key(tree)
    previous = load_memo(cache_dir, name, rules.digest, key)
    memo = Memo(rules.digest, str(key), time.time_ns())
    parent = ctx.parent
    verdicts = result.verdicts
    invalid: dict[str, Invalid] = {}
    for rel, path, st in _files(tree, excludes):
        known = previous.get(rel, st) if previous is not None else None
        if known is not None:
            memo.files[rel] = known
            if known.kind is not None:
                verdicts.inherited += 1
                if known.problem is not None:
                    invalid[rel] = Invalid(known.kind, known.problem, st, known.was_valid)
                    if known.was_valid and parent.before(rel, known.kind) == "valid":
                        verdicts.regressed.append(rel)  # its last check was never stored
            continue
        prefix = previous.prefix(rel, st) if previous is not None else None
        found = _check_one(ctx, rel, path, st, prefix)
        memo.files[rel] = found
        if found.kind is not None and found.problem is not None:
            invalid[rel] = Invalid(found.kind, found.problem, st, found.was_valid)
    save_memo(cache_dir, name, memo)
    verdicts.invalid = len(invalid)
    verdicts.valid = verdicts.checked + verdicts.inherited - verdicts.invalid
    verdicts.files = {rel: invalid[rel] for rel in sorted(invalid)[:MAX_LISTED]}
    if consistency == "quiesced":
        result.warnings = _warnings(verdicts, invalid)
    return result


@dataclass
class _Context:
    rules: Rules
    parent: _Parent
    result: CaptureCheck
    sqlite_checked: SqliteResults


def _check_one(
    ctx: _Context, rel: str, path: Path, st: Stat, prefix: Remembered | None
) -> Remembered:
    """A file that changed since the last check (or was never checked): its format by the
    rules, then its check; an invalid one is compared with the parent. `prefix`: the last
    check's verdict when the file is JSONL that was valid then and only grew since."""
    kind = ctx.rules.kind_by_name(rel)
    if kind == BY_HEADER:
        kind = SQLITE if has_sqlite_header(path) else None
    if kind is None:
        return Remembered(None, st)
    verdicts, parent = ctx.result.verdicts, ctx.parent
    verdicts.checked += 1
    problem = _problem(ctx, kind, rel, path, st, prefix)
    if problem is None:
        return Remembered(kind, st)
    before = parent.before(rel, kind)
    if before == "valid":
        verdicts.regressed.append(rel)
    was_valid = before == "valid" or (isinstance(before, Invalid) and before.was_valid)
    return Remembered(kind, st, problem, was_valid)


def _problem(
    ctx: _Context, kind: str, rel: str, path: Path, st: Stat, prefix: Remembered | None
) -> str | None:
    """The check of `kind` on `path`, by the shortest sound route."""
    if kind == JSONL and prefix is not None:
        problem, begin = check_jsonl_from(path, prefix.stat[0])
        if begin:
            ctx.result.tail_checked.append(rel)
        return problem
    if kind == SQLITE:
        known = ctx.sqlite_checked.get(str(path))
        if known is not None and known[0] == st:
            ctx.result.sqlite_shared += 1
            return sqlite_problem(known[1])
    return check(kind, path, read_only=True)


def _warnings(verdicts: Verdicts, invalid: dict[str, Invalid]) -> list[str]:
    lines = [
        f"consistency: {rel} was valid in the parent snapshot and is not in this quiesced "
        f"capture ({invalid[rel].kind}: {invalid[rel].problem})"
        for rel in sorted(verdicts.regressed)[:MAX_WARNED]
    ]
    more = len(verdicts.regressed) - MAX_WARNED
    if more > 0:
        lines.append(f"consistency: and {more} more file(s) torn in this quiesced capture")
    return lines


def _tree_key(tree: Source) -> Path:
    """What the memo is kept for: the staged directory, or every named one of a source
    of several (decision 0006)."""
    if isinstance(tree, tuple):
        return Path("|".join(f"{d.name}={d.path}" for d in tree))
    return tree


def _roots(tree: Source) -> list[tuple[str, Path]]:
    """Each directory walked, with the prefix its files have in the snapshot."""
    if isinstance(tree, tuple):
        return [(f"{d.name}/", d.path) for d in tree]
    return [("", tree)]


def _files(tree: Source, excludes: list[str]) -> Iterator[tuple[str, Path, Stat]]:
    """Every regular file of the tree: its path in the snapshot, on disk, and its metadata."""
    for prefix, root in _roots(tree):
        for level in walk(root):
            base = f"{prefix}{level.rel}/" if level.rel else prefix
            if excludes:  # what the Archiver leaves out, it never walks into
                level.dirs[:] = [d for d in level.dirs if not is_excluded(base + d, excludes)]
            for name in level.files:
                rel = base + name
                if excludes and is_excluded(rel, excludes):
                    continue
                try:
                    st = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
                except OSError:
                    continue  # gone: the Archiver will not store it either
                if stat.S_ISREG(st.st_mode):
                    inner = rel[len(prefix):]
                    yield rel, root / inner, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
