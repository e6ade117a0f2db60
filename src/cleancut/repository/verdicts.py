"""A snapshot's capture-time validation result: the `validation` field of its record.

After a hot capture (agent resumed), the JSON, JSONL and SQLite files of the
captured tree are checked (validation/capture.py) and the result travels in the
snapshot record, so any host that can read the snapshot knows it, `copy` carries
it along, and nothing else in the repository has to know it exists. Snapshots
written before this field, or without a capture, have none: a restore test then
judges every file on its own, as it always did.

The field (version 1; docs/repository-format.md):

    {"version": 1, "rules": "<digest of the source's validate rules>",
     "checked": N, "inherited": N, "valid": N, "invalid": N,
     "files": {"<path>": {"kind": "json", "problem": "...",
                          "stat": [size, mtime_ns, ctime_ns, inode], "was_valid": false}},
     "listed": N, "regressed": ["<path>", ...]}

Only files that were *not* valid are listed (the first MAX_LISTED by path): a
file not listed was valid, or not checked. `stat` is the file's metadata as the
capture checked it, which is also what the snapshot's node records, so a restore
test can tell that the node holds the very content that was judged. `was_valid`
says an earlier snapshot of the source held the file valid; `regressed` names the
files that were valid in the parent and are not in this snapshot (the consistency
warning of a `quiesced` snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tree import FILE, Node

VERSION = 1
MAX_LISTED = 10_000  # bounds the record; beyond it a restore test judges files on their own

Stat = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


def node_stat(node: Node) -> Stat:
    return (node.size, node.mtime_ns, node.ctime_ns, node.inode)


@dataclass(frozen=True)
class Invalid:
    """One file that was not valid when captured."""

    kind: str
    problem: str
    stat: Stat
    was_valid: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "problem": self.problem,
            "stat": list(self.stat),
            "was_valid": self.was_valid,
        }

    @classmethod
    def from_json(cls, raw: object) -> Invalid | None:
        if not isinstance(raw, dict):
            return None
        kind, problem, stat = raw.get("kind"), raw.get("problem"), raw.get("stat")
        if not (isinstance(kind, str) and isinstance(problem, str) and isinstance(stat, list)):
            return None
        if len(stat) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in stat):
            return None
        was_valid = raw.get("was_valid") is True
        return cls(kind, problem, (stat[0], stat[1], stat[2], stat[3]), was_valid)


@dataclass
class Verdicts:
    """What the capture found; `files` holds the invalid ones only."""

    rules: str
    checked: int = 0
    inherited: int = 0
    valid: int = 0
    files: dict[str, Invalid] = field(default_factory=dict)
    invalid: int = 0  # all invalid files, listed or not
    regressed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "rules": self.rules,
            "checked": self.checked,
            "inherited": self.inherited,
            "valid": self.valid,
            "invalid": self.invalid,
            "files": {path: entry.to_json() for path, entry in sorted(self.files.items())},
            "listed": len(self.files),
            "regressed": sorted(self.regressed),
        }

    @classmethod
    def from_json(cls, raw: object) -> Verdicts | None:
        """None for a field this version cannot read (absent, another version, malformed):
        then nothing is known, and a restore test judges every file on its own."""
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            return None
        files_raw = raw.get("files")
        if not isinstance(files_raw, dict):
            return None
        files = {}
        for path, entry in files_raw.items():
            parsed = Invalid.from_json(entry)
            if parsed is None:
                return None
            files[str(path)] = parsed
        regressed = raw.get("regressed", [])
        return cls(
            rules=str(raw.get("rules", "")),
            checked=_count(raw, "checked"),
            inherited=_count(raw, "inherited"),
            valid=_count(raw, "valid"),
            files=files,
            invalid=_count(raw, "invalid"),
            regressed=[str(p) for p in regressed] if isinstance(regressed, list) else [],
        )

    def invalid_at_capture(self, rel: str, node: Node, kind: str) -> Invalid | None:
        """The capture's finding for this very content of `rel`: listed as invalid, checked
        as the same format, and the node records the metadata the capture checked."""
        entry = self.files.get(rel)
        if entry is None or node.type != FILE or entry.kind != kind:
            return None
        return entry if entry.stat == node_stat(node) else None


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
