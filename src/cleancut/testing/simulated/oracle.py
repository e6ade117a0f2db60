"""The oracle: every write the agent makes, its sequence number and what it depends on.

It lives outside the workspace, so no backup copies it, and it is the ground
truth a checker holds a copy against: the writes visible in a consistent copy
are closed under dependencies.

Completeness: a record is written to the oracle file (one `write()`, no fsync,
so readers in other processes see it at once) *before* the write it describes
starts. The oracle therefore covers every write a copy could hold at any
instant, even while the agent keeps running, at the cost of one small extra
syscall per write (the agent's fsyncs dominate by far: measured, the agent
runs about 3% slower with the oracle than without). A record whose write
never happened (the agent was killed in between) is harmless: nothing visible
depends on it.

One record per line: `{"s": seq, "o": op, "p": path, "d": [deps], ...}` with op

- `line`    an appended line carrying `wseq` s (transcripts, run logs, daily notes;
            a daily-note line also records `h`, the note's hash after it, and `n`, its size);
- `file`    a whole-file version carrying `wseq` s (atomic replace or rewrite in place;
            `h` is its content hash for files the memory index reads);
- `rename`  `p` renamed to `to`;  `unlink`  `p` removed;
- `ledger`  a ledger transition `st` for key `k` (the SDK writes the line; it has no wseq);
- `row`     a memory-index row for source file `k` (hash `h`, version `src`);
- `tx`      a memory-index transaction: `g` generation, `rows` {source: row seq},
            `full` when it replaced every row (a reindex).

In journal mode (journalio.py) a record also holds `j`, the journal record the
write went into, and the header names the journal (`journal`) and where the
memory index lives (`index`, outside the tree). A restarted agent continues
its oracle (a second header line, `restarted`); an agent started on a restored
tree with a new oracle starts numbering after the tree's highest wseq, which
the header gives as `after` (writes up to it predate the oracle).
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1


class OracleWriter:
    """Allocates sequence numbers and appends records; safe to share between threads."""

    def __init__(self, path: Path, *, resume: bool = False, after: int = 0,
                 **header: Any) -> None:
        """A new oracle file; `resume` continues an existing one after its last record,
        `after` starts a new one's numbering after that sequence number."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = after
        if resume:
            self._seq = _cut_to_last_line(path)
            header["restarted"] = True
        elif after:
            header["after"] = after
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if resume else os.O_TRUNC)
        self._fd = os.open(path, flags, 0o644)
        self._write({"oracle": VERSION, **header})

    def allocate(self) -> int:
        """A new sequence number; the write must be noted before it starts."""
        with self._lock:
            self._seq += 1
            return self._seq

    def note(self, seq: int, op: str, path: str, deps: tuple[int, ...] | list[int] = (),
             **extra: Any) -> None:
        """Record write `seq` now, before the write itself starts."""
        record: dict[str, Any] = {"s": seq, "o": op, "p": path}
        if deps:
            record["d"] = sorted(set(deps))
        record.update(extra)
        self._write(record)

    def add(self, op: str, path: str, deps: tuple[int, ...] | list[int] = (),
            **extra: object) -> int:
        """allocate() + note() for writes whose content does not embed the sequence number."""
        seq = self.allocate()
        self.note(seq, op, path, deps, **extra)
        return seq

    def _write(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        os.close(self._fd)


def _cut_to_last_line(path: Path) -> int:
    """Drop a torn last line (the agent died writing it); the highest sequence number."""
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    last = 0
    for raw in data[:good].splitlines():
        rec = json.loads(raw)
        last = max(last, rec.get("s", 0), rec.get("after", 0))
    return last


@dataclass(frozen=True)
class Write:
    seq: int
    op: str
    path: str
    deps: tuple[int, ...]
    extra: dict[str, Any]


@dataclass
class Oracle:
    """The records of one oracle file, indexed for the checker."""

    header: dict[str, Any]
    writes: dict[int, Write]
    by_path: dict[str, list[Write]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Oracle:
        """Read an oracle file; a torn last line (the agent was writing it) is ignored."""
        header: dict[str, Any] = {}
        writes: dict[int, Write] = {}
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                rec = json.loads(raw)
                if "oracle" in rec:
                    header |= rec  # a restarted agent adds a header line
                    continue
                seq = rec.pop("s")
                writes[seq] = Write(seq, rec.pop("o"), rec.pop("p"), tuple(rec.pop("d", ())), rec)
        by_path: dict[str, list[Write]] = defaultdict(list)
        for seq in sorted(writes):
            by_path[writes[seq].path].append(writes[seq])
        return cls(header, writes, dict(by_path))

    def versions(self, path: str) -> list[Write]:
        """The writes to `path` in order (whole-file versions, lines, renames …)."""
        return self.by_path.get(path, [])
