"""Which paths of a source a backup skips (--exclude): one function, imported by the
walk and by the command line before the walk's heavier modules load."""

from __future__ import annotations

import fnmatch


def is_excluded(rel: str, patterns: list[str]) -> bool:
    """A pattern with a "/" matches the path relative to the source, else the base name."""
    base = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        target = rel if "/" in pattern.strip("/") else base
        if fnmatch.fnmatchcase(target, pattern.strip("/")):
            return True
    return False
