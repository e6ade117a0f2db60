"""Which files of a source are checked, and as what: the `validate` rules of a source.

A source's table in the config file may say, in order:

    validate = { "*.json" = "json", "logs/*.jsonl" = "jsonl", "*.db" = "sqlite",
                 "cache/*" = "none" }

The first pattern that matches a file decides its format (json, jsonl, sqlite) or
that it is not checked (none). Patterns match as `exclude` patterns do: one with a
"/" matches the path relative to the source, else the file's base name; `*`
matches across "/" (fnmatch). A file no rule matches gets the built-in defaults:

    *.json                  json
    *.jsonl, *.ndjson       jsonl
    *.sqlite, *.sqlite3     sqlite
    anything else           sqlite when it starts with SQLite's header, else not checked

so `"*" = "none"` as the last rule turns the defaults off.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from .formats import JSON, JSONL, KINDS, NONE, SQLITE

CHOICES = (*KINDS, NONE)
BY_HEADER = "by-header"  # kind_by_name: only the file's first bytes can tell
_BY_SUFFIX = (
    ((".json",), JSON),
    ((".jsonl", ".ndjson"), JSONL),
    ((".sqlite", ".sqlite3"), SQLITE),
)


@dataclass(frozen=True)
class Rules:
    """A source's rules, in the order written; empty means the defaults alone."""

    rules: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for pattern, kind in self.rules:
            if kind not in CHOICES:
                raise ValueError(
                    f"{pattern!r}: unknown format {kind!r} (choose {', '.join(CHOICES)})"
                )
            if not pattern.strip("/"):
                raise ValueError("an empty pattern matches nothing")

    @classmethod
    def from_mapping(cls, raw: dict[str, object]) -> Rules:
        """From the config file's table (TOML keeps its order); ValueError names the bad
        entry."""
        rules = []
        for pattern, kind in raw.items():
            if not isinstance(kind, str):
                raise ValueError(f"{pattern!r}: expected one of {', '.join(CHOICES)}")
            rules.append((pattern, kind))
        return cls(tuple(rules))

    def kind_of(self, rel: str, has_header: Callable[[], bool]) -> str | None:
        """The format `rel` is checked as, or None. `has_header` is asked only when the
        defaults must look inside the file (no rule and no known suffix)."""
        kind = self.kind_by_name(rel)
        if kind == BY_HEADER:
            return SQLITE if has_header() else None
        return kind

    def kind_by_name(self, rel: str) -> str | None:
        """The format the name alone decides, None (not checked), or BY_HEADER: sqlite if
        the file starts with SQLite's header, else not checked."""
        for pattern, kind in self.rules:
            if matches(rel, pattern):
                return None if kind == NONE else kind
        name = rel.rsplit("/", 1)[-1].lower()
        for suffixes, kind in _BY_SUFFIX:
            if name.endswith(suffixes):
                return kind
        return BY_HEADER

    def to_json(self) -> dict[str, str]:
        return dict(self.rules)

    @property
    def digest(self) -> str:
        """Names this set of rules in a capture's result: verdicts made under other rules
        are not inherited (a file may be checked differently now)."""
        text = json.dumps(list(self.rules), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT_RULES = Rules()
# The defaults as rules would say them, for display (`config show`): what no rule matches.
DEFAULT_VALIDATE = (
    ("*.json", JSON),
    ("*.jsonl", JSONL),
    ("*.ndjson", JSONL),
    ("*.sqlite", SQLITE),
    ("*.sqlite3", SQLITE),
    ("(SQLite header)", SQLITE),
)


def matches(rel: str, pattern: str) -> bool:
    """A pattern with a "/" matches the relative path, else the base name."""
    pattern = pattern.strip("/")
    target = rel if "/" in pattern else rel.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(target, pattern)
