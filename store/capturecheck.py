"""Checking a capture's files after the agent resumed, and noticing what tore.

A hot backup's pause ends before anything here runs: the staged tree is stable
(the staging lock is held until the snapshot is stored), so its JSON, JSONL and
SQLite files can be checked at leisure (store/fileformats.py, the source's
`validate` rules) and the result goes into the snapshot record
(store/verdicts.py).

Only what changed is checked. A file whose metadata (size, mtime, ctime, inode)
equals its node in the parent snapshot, by the same rule the Archiver uses to
reuse that node's content without reading it (its racy window included), holds
the content the parent's capture judged: it inherits the parent's verdict. The
parent's state comes from the local cache (store/statecache.py); without it, or
when the parent was checked under other rules, every file is checked (slower,
never wrong).

A file that was valid in the parent and is not now is *regressed*: in a
`quiesced` snapshot, where the agent promised that everything it wrote was
whole, that is a consistency warning at backup time (exit 3, one line naming
the file) and a warning in `status` (store/health.py) while the source's newest
snapshot still holds it. The snapshot is still stored: the warning says what
the cut holds; losing the cut would help nobody.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .backup import RACY_WINDOW_NS, is_excluded
from .chain import snapshot_state
from .errors import CleancutError
from .fileformats import check, has_sqlite_header
from .policy import latest_of
from .repository import Repository
from .snapshot import Snapshot
from .state import State
from .statecache import load_state
from .tree import FILE
from .treewalk import walk
from .validaterules import Rules
from .verdicts import MAX_LISTED, Invalid, Stat, Verdicts, node_stat

MAX_WARNED = 5  # regressed files named one per line; the rest counted in one more


@dataclass
class CaptureCheck:
    verdicts: Verdicts
    warnings: list[str] = field(default_factory=list)


class _Parent:
    """What the parent snapshot knew: its verdicts (when made under the same rules) and
    its state (from the cache; replayed from the repository only when a file is invalid
    and whether it was valid before must be known)."""

    def __init__(self, repo: Repository, name: str, rules: Rules) -> None:
        self.repo = repo
        self.snapshot: Snapshot | None = latest_of(repo.snapshots(), name)
        found = Verdicts.from_json(self.snapshot.validation) if self.snapshot else None
        self.verdicts = found if found is not None and found.rules == rules.digest else None
        self.cached: State | None = None
        self._replayed: State | None = None
        if self.snapshot is not None and self.verdicts is not None:
            self.cached = load_state(repo.cache.path.parent, name, self.snapshot.id)

    def inherited(self, rel: str, st: Stat, kind: str) -> Invalid | None | bool:
        """The parent's verdict for this very content (an Invalid, or None: valid), or
        False when it cannot be inherited and the file must be checked."""
        if self.cached is None or self.snapshot is None or self.verdicts is None:
            return False
        node = self.cached.get(rel)
        if node is None or node.type != FILE or node_stat(node) != st:
            return False
        if node.mtime_ns >= self.snapshot.scan_start_ns - RACY_WINDOW_NS:
            return False  # the Archiver re-reads it too: it may have changed within a tick
        entry = self.verdicts.files.get(rel)
        if entry is not None:
            return entry if entry.kind == kind else False
        if self.verdicts.invalid > len(self.verdicts.files):
            return False  # an unlisted file may have been invalid: check it
        return None

    def before(self, rel: str, kind: str) -> Invalid | str | None:
        """The parent's verdict on `rel` whatever its content: an Invalid, "valid", or
        None when unknown (no verdicts, not in the parent, not listed past the limit)."""
        if self.verdicts is None:
            return None
        entry = self.verdicts.files.get(rel)
        if entry is not None:
            return entry if entry.kind == kind else None
        if self.verdicts.invalid > len(self.verdicts.files):
            return None
        node = self._state().get(rel)
        return "valid" if node is not None and node.type == FILE else None

    def _state(self) -> State:
        if self.cached is not None:
            return self.cached
        if self._replayed is None:
            self._replayed = {}
            if self.snapshot is not None:
                # A parent that cannot be read: nothing is known of it.
                with contextlib.suppress(CleancutError):
                    self._replayed = snapshot_state(self.repo, self.snapshot)
        return self._replayed


def check_capture(
    repo: Repository,
    name: str,
    tree: Path,
    rules: Rules,
    excludes: list[str],
    consistency: str,
) -> CaptureCheck:
    """Check the captured `tree` of source `name`; warn of regressed files when the
    capture is `quiesced`."""
    parent = _Parent(repo, name, rules)
    verdicts = Verdicts(rules=rules.digest)
    invalid: dict[str, Invalid] = {}
    for rel, path, st in _files(tree, excludes):
        kind = rules.kind_of(rel, functools.partial(has_sqlite_header, path))
        if kind is None:
            continue
        inherited = parent.inherited(rel, st, kind)
        if inherited is not False:
            verdicts.inherited += 1
            if isinstance(inherited, Invalid):
                invalid[rel] = inherited
            continue
        verdicts.checked += 1
        problem = check(kind, path, read_only=True)
        if problem is None:
            continue
        before = parent.before(rel, kind)
        if before == "valid":
            verdicts.regressed.append(rel)
        was_valid = before == "valid" or (isinstance(before, Invalid) and before.was_valid)
        invalid[rel] = Invalid(kind, problem, st, was_valid)
    verdicts.invalid = len(invalid)
    verdicts.valid = verdicts.checked + verdicts.inherited - verdicts.invalid
    verdicts.files = {rel: invalid[rel] for rel in sorted(invalid)[:MAX_LISTED]}
    warnings = _warnings(verdicts, invalid) if consistency == "quiesced" else []
    return CaptureCheck(verdicts, warnings)


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


def _files(tree: Path, excludes: list[str]) -> Iterator[tuple[str, Path, Stat]]:
    """Every regular file of the tree: its relative path, its path, its metadata."""
    for level in walk(tree):
        if excludes:  # what the Archiver leaves out, it never walks into
            level.dirs[:] = [
                d for d in level.dirs
                if not is_excluded(f"{level.rel}/{d}" if level.rel else d, excludes)
            ]
        for name in level.files:
            rel = f"{level.rel}/{name}" if level.rel else name
            if excludes and is_excluded(rel, excludes):
                continue
            try:
                st = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
            except OSError:
                continue  # gone: the Archiver will not store it either
            if stat.S_ISREG(st.st_mode):
                yield rel, tree / rel, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
