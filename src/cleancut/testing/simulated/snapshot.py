"""Reading a copy of the agent's tree for the checker: parse everything once, note what is broken.

Reading is where the first rules of "What a consistent snapshot satisfies" are
checked: every JSON file parses and is not empty, every JSONL line parses and
holds no NUL byte, a transcript starts with its header, Markdown carries its
version marker, and no temp, lock or acknowledgement file is left behind in a
quiesced copy. The memory index is read in index.py.

A crash-consistent copy (`quiesced=False`) is one instant of the agent, and
some of the agent's own ways of writing pass through states a quiesced copy
must not show: temp, lock and acknowledgement files; a workspace file between
the truncate and the write of its in-place rewrite; a `.bak` half copied; the
index between the renames of its swap. Those are accepted at that standard
(they are what a crash at that instant leaves, and why quiesce exists); states
no instant of the agent passes through are not.

A journal state (`journaled`: the tree replayed to a record boundary of an
agent in journal mode) is one instant too, but every write in it is whole: the
windows above do not exist, so they are not accepted (see journalio.py). In
journal mode the memory index lives outside the tree (`expect_index=False`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats import WSEQ, json_version, md_version
from .index import IndexState, read_index
from .layout import Layout

_NOTE_MARK = re.compile(rb"<!-- wseq (\d+) -->\n")
SKIP_DIRS = {"attachments", "logs"}  # bulk data and the gateway's log: not agent state


def is_leftover(name: str) -> str | None:
    """What kind of leftover `name` is (temp, lock, acknowledgement), or None."""
    if name.endswith(".tmp") or ".tmp-" in name:
        return "temp"
    if name.endswith(".lock"):
        return "lock"
    if name.endswith(".delivered"):
        return "acknowledgement"
    return None


@dataclass
class Snapshot:
    """What the copy holds, parsed, plus the problems found reading it."""

    root: Path
    quiesced: bool
    journaled: bool = False
    layout: Layout = field(init=False)
    problems: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)
    json: dict[str, Any] = field(default_factory=dict)  # rel -> parsed, for files that parse
    jsonl: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rel -> good lines
    raw: dict[str, bytes] = field(default_factory=dict)  # Markdown and daily notes
    versions: dict[str, int | None] = field(default_factory=dict)  # whole-file versions
    line_seqs: dict[str, set[int]] = field(default_factory=dict)  # appended files
    ledger: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # key -> lines
    index: IndexState | None = None

    def __post_init__(self) -> None:
        self.layout = Layout(self.root)

    def rel(self, path: Path) -> str:
        return self.layout.rel(path)

    @property
    def whole_files(self) -> bool:
        """No file may be caught mid-write: quiesced, or a journal state."""
        return self.quiesced or self.journaled

    def problem(self, text: str) -> None:
        self.problems.append(text)


def load_snapshot(root: Path, quiesced: bool, expect_index: bool = True,
                  journaled: bool = False) -> Snapshot:
    snap = Snapshot(root, quiesced, journaled)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here in (snap.layout.workspace, snap.layout.state):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = here / name
            rel = snap.rel(path)
            snap.present.add(rel)
            kind = is_leftover(name)
            if kind and snap.whole_files:
                where = "a quiesced snapshot" if quiesced else "a journal state"
                snap.problem(f"{rel}: {kind} file left behind in {where}")
            if kind in ("temp", "lock"):
                continue  # mid-write by nature; nothing to parse
            _read_file(snap, path, rel)
    if not snap.layout.state.is_dir():
        snap.problem("state/: missing")
    db = snap.layout.memory_db
    if expect_index or db.exists() or Path(f"{db}-wal").exists():
        snap.index = read_index(db, snap.problems, snap.rel(db), quiesced)
    return snap


def _read_file(snap: Snapshot, path: Path, rel: str) -> None:
    name = path.name
    if name.endswith((".json", ".delivered")) or ".json.bak" in name:
        _read_json(snap, path, rel)
    elif name.endswith(".jsonl"):
        _read_jsonl(snap, path, rel)
    elif name.endswith(".md"):
        data = path.read_bytes()
        snap.raw[rel] = data
        if path.parent == snap.layout.notes_dir:
            _read_note(snap, rel, data)
        else:
            version = md_version(data)
            snap.versions[rel] = version
            if version is None and snap.whole_files:  # else: the rewrite's own window
                what = "empty" if not data else "without its version marker"
                snap.problem(f"{rel}: {what}: copied in the middle of an in-place rewrite")


def _read_json(snap: Snapshot, path: Path, rel: str) -> None:
    data = path.read_bytes()
    if ".json.bak" in path.name and not snap.whole_files:
        return  # the .bak ring is a plain copy: any instant may catch one half written
    if not data.strip():
        snap.problem(f"{rel}: empty ({len(data)} bytes)")
        snap.versions[rel] = None
        return
    try:
        obj = json.loads(data)
    except ValueError as exc:
        snap.problem(f"{rel}: does not parse as JSON ({exc})")
        snap.versions[rel] = None
        return
    snap.json[rel] = obj
    snap.versions[rel] = json_version(obj)


def _read_jsonl(snap: Snapshot, path: Path, rel: str) -> None:
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        snap.problem(f"{rel}: holds NUL bytes (from offset {nul})")
    if data and not data.endswith(b"\n"):
        snap.problem(f"{rel}: torn tail: the last line has no newline")
    lines: list[dict[str, Any]] = []
    for n, raw in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else
                            data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            snap.problem(f"{rel}: line {n} does not parse as JSON")
            continue
        if not isinstance(obj, dict):
            snap.problem(f"{rel}: line {n} is not a JSON object")
            continue
        lines.append(obj)
    snap.jsonl[rel] = lines
    snap.line_seqs[rel] = {o[WSEQ] for o in lines if isinstance(o.get(WSEQ), int)}
    if path.parent == snap.layout.sessions_dir:
        head = lines[0] if lines else None
        if not head or head.get("type") != "session":
            snap.problem(f"{rel}: transcript does not start with its session header")
        elif head.get("id") != path.stem:
            snap.problem(f"{rel}: header id {head.get('id')!r} does not match the file name")
    if path == snap.layout.ledger:
        for obj in lines:
            if isinstance(obj.get("key"), str):
                snap.ledger.setdefault(obj["key"], []).append(obj)


def _read_note(snap: Snapshot, rel: str, data: bytes) -> None:
    if b"\x00" in data:
        snap.problem(f"{rel}: daily note holds NUL bytes")
    good = 0
    seqs = set()
    for found in _NOTE_MARK.finditer(data):
        seqs.add(int(found.group(1)))
        good = found.end()
    snap.line_seqs[rel] = seqs
    if good != len(data) or data.count(b"\n") != len(seqs):
        snap.problem(f"{rel}: daily note has a torn or unmarked line")
