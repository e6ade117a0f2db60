"""Sources of several named directories, captured in one cut (decision 0006).

A source is one directory (a `Path`), or several directories that must be one
snapshot: an agent's state directory and a workspace that lives elsewhere, say.
Each directory has a name; in the snapshot each is one directory at the root of
the tree, named so (`state/...`, `workspace/...`), and the record keeps each
name's original path (`dirs`), so a restore can put each back where it was.

This module owns the names and their rules: what a name may be, that names are
unique, and that no directory holds another (a file would then be captured
twice, at two moments).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleancut.errors import UsageError

# A name is one path component everywhere it appears (the snapshot's root, restore's
# target, a staging directory): short, printable, no dot-only names, no separators.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class SourceDir:
    """One directory of a source: its name in the snapshot, where it is read, and the
    path the snapshot records for it (a hot backup reads a staged copy of `recorded`)."""

    name: str
    path: Path
    recorded: str = ""

    @property
    def original(self) -> str:
        return self.recorded or str(self.path)


Dirs = tuple[SourceDir, ...]
# What a backup reads: one directory, or several named ones.
Source = Path | Dirs


def check_name(name: str, where: str = "directory name") -> str:
    if not NAME_RE.fullmatch(name):
        raise UsageError(
            f"{where} {name!r}: use letters, digits, '.', '_' or '-' (at most 64, not "
            "starting with '.', '_' or '-')"
        )
    return name


def parse_dir(text: str) -> SourceDir:
    """`NAME=PATH` as the command line gives it (`--dir state=/home/claw/.openclaw`)."""
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise UsageError(f"--dir {text!r}: expected NAME=PATH, like state=/home/claw/.openclaw")
    return SourceDir(check_name(name, "--dir name"), Path(path).expanduser().absolute())


def make_dirs(dirs: list[SourceDir] | tuple[SourceDir, ...]) -> Dirs:
    """Check a source's directories and put them in name order (the snapshot's order).

    At least one (one named directory is allowed: its snapshot is laid out as `NAME/...`
    and records its path, so adding a second later keeps the first's paths), unique
    names, and no directory inside another, compared as they resolve now (symlinks
    followed), so the same files can never be captured twice under two names."""
    if not dirs:
        raise UsageError("a source of named directories names at least one")
    seen: dict[str, SourceDir] = {}
    for item in dirs:
        check_name(item.name)
        if item.name in seen:
            raise UsageError(f"directory name {item.name!r} is given twice")
        seen[item.name] = item
    ordered = tuple(seen[name] for name in sorted(seen))
    _refuse_nesting(ordered)
    return ordered


def _refuse_nesting(dirs: Dirs) -> None:
    real = [(d, os.path.realpath(d.path)) for d in dirs]
    for i, (a, pa) in enumerate(real):
        for b, pb in real[i + 1:]:
            common = os.path.commonpath([pa, pb])
            if common in (pa, pb):
                inner, outer = (a, b) if common == pb else (b, a)
                raise UsageError(
                    f"directory {inner.name} ({inner.path}) is inside {outer.name} "
                    f"({outer.path}): it would be captured twice; name only {outer.name}"
                )


def is_dirs(source: Source) -> bool:
    return isinstance(source, tuple)


def source_paths(source: Source) -> list[str]:
    """The original paths a snapshot of this source records in `paths`."""
    if isinstance(source, tuple):
        return [d.original for d in source]
    return [str(source)]


def dirs_record(source: Source) -> list[dict[str, str]] | None:
    """The record's `dirs` field: None for a one-directory source (its record stays as
    records always were), else each name with its original path."""
    if not isinstance(source, tuple):
        return None
    return [{"name": d.name, "path": d.original} for d in source]


def default_name(source: Source) -> str:
    """The catalog name of a source named on the command line without --name."""
    if isinstance(source, tuple):
        raise UsageError("a backup of several directories needs --name (the source's name)")
    return str(source)


def recorded_dirs(record: Any) -> dict[str, str]:
    """A snapshot's named directories as {name: original path}; {} for a one-directory
    snapshot (every snapshot written before decision 0006). Malformed entries are
    ignored: the tree, not this field, is what restore writes."""
    found: dict[str, str] = {}
    if not isinstance(record, list):
        return found
    for entry in record:
        if isinstance(entry, dict):
            name, path = entry.get("name"), entry.get("path")
            if isinstance(name, str) and isinstance(path, str) and NAME_RE.fullmatch(name):
                found[name] = path
    return found
