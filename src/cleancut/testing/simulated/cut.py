"""The checks that need the oracle: the cut, the index's history, the notes' versions.

The cut: every write recorded in the oracle is, in the copy, *visible*,
*not visible* or *unknown*:

- a line: visible if a line with its wseq is in the file (or it is older than
  the oldest line, i.e. trimmed away); not visible otherwise;
- a whole-file version: visible if the file's own version is at least its seq;
  a file gone may have been acknowledged and deleted, or never written: unknown
  unless its rename target is there;
- a rename or removal: not visible while the source is there; a rename is
  visible once its target is; otherwise unknown;
- a ledger transition: visible if the ledger holds that key in that state;
- an index row or transaction: from the database's rows and meta.last_wseq.

Lines of one file also depend on the line before them. The copy is a clean cut
when no visible write depends on a write that is not visible. A dependency
that is unknown is followed through: if it leads (through unknowns) to a write
that is not visible, then somewhere along that chain a visible write depends
on an invisible one, whatever the unknowns really were — so the check never
reports a cut that could be clean.
"""

from __future__ import annotations

from .formats import digest
from .oracle import Oracle, Write
from .snapshot import Snapshot

LIMIT = 20


def visibility(snap: Snapshot, oracle: Oracle) -> dict[int, bool | None]:
    ledger_seen = {(k, line.get("state")) for k, lines in snap.ledger.items() for line in lines}
    index = snap.index
    vis: dict[int, bool | None] = {}
    for path, writes in oracle.by_path.items():
        present = path in snap.present
        seqs = snap.line_seqs.get(path)
        oldest = min(seqs) if seqs else None
        version = snap.versions.get(path)
        for w in writes:
            v: bool | None
            if w.op == "line":
                if not present:
                    v = False
                elif seqs is None:
                    v = None
                else:
                    v = w.seq in seqs or (oldest is not None and w.seq < oldest)
            elif w.op == "file":
                if present:
                    v = None if version is None else w.seq <= version
                else:
                    v = _gone(snap, writes, w)
            elif w.op == "rename":
                v = False if present else (True if w.extra["to"] in snap.present else None)
            elif w.op == "unlink":
                v = False if present else None
            elif w.op == "ledger":
                v = (w.extra["k"], w.extra["st"]) in ledger_seen
            elif w.op == "row":
                row = index.files.get(w.extra["k"]) if index else None
                v = None if index is None else (row is not None and row.wseq >= w.seq)
            elif w.op == "tx":
                v = None if index is None else index.last_wseq >= w.seq
            else:
                v = None
            vis[w.seq] = v
    return vis


def _gone(snap: Snapshot, writes: list[Write], w: Write) -> bool | None:
    """A file version whose file is absent from the copy."""
    later = [x for x in writes if x.seq > w.seq and x.op in ("rename", "unlink")]
    if not later:
        return False  # never moved or removed: it was not written yet
    if later[0].op == "rename" and later[0].extra["to"] in snap.present:
        return True
    return None


def _line_deps(oracle: Oracle) -> dict[int, int]:
    """Each appended line depends on the line appended before it to the same file."""
    prev: dict[int, int] = {}
    for writes in oracle.by_path.values():
        last = None
        for w in writes:
            if w.op == "line":
                if last is not None:
                    prev[w.seq] = last
                last = w.seq
            elif w.op == "trim":
                last = None
    return prev


def describe(w: Write) -> str:
    if w.op == "line":
        return f"line wseq {w.seq} of {w.path}"
    if w.op == "file":
        return f"{w.path} version {w.seq}"
    if w.op == "ledger":
        return f"ledger {w.extra['st']} of {w.extra['k']}"
    if w.op == "rename":
        return f"the rename of {w.path} to {w.extra['to']}"
    if w.op == "unlink":
        return f"the removal of {w.path}"
    if w.op == "row":
        return f"the index row of {w.extra['k']} (wseq {w.seq})"
    if w.op == "tx":
        return f"index transaction {w.seq}"
    return f"{w.op} {w.path} ({w.seq})"


def check_cut(snap: Snapshot, oracle: Oracle, limit: int = LIMIT) -> list[str]:
    """Visible writes closed under dependencies."""
    vis = visibility(snap, oracle)
    prev = _line_deps(oracle)

    def deps(w: Write) -> list[int]:
        extra = prev.get(w.seq)
        return [*w.deps, extra] if extra is not None else list(w.deps)

    hidden: dict[int, int] = {}

    def false_below(start: int) -> int:
        """A write not visible, reachable from the unknown `start` through unknowns (0: none)."""
        stack, seen = [start], {start}
        while stack:
            seq = stack.pop()
            if seq in hidden:
                if hidden[seq]:
                    return hidden[seq]
                continue
            for d in deps(oracle.writes[seq]):
                if d not in oracle.writes or d in seen:
                    continue
                seen.add(d)
                if vis.get(d) is False:
                    hidden[start] = d
                    return d
                if vis.get(d) is None:
                    stack.append(d)
        hidden[start] = 0
        return 0

    found: list[str] = []
    for seq, v in sorted(vis.items()):
        if v is not True:
            continue
        w = oracle.writes[seq]
        for d in deps(w):
            if d not in oracle.writes:
                continue
            missing = d if vis.get(d) is False else false_below(d) if vis.get(d) is None else 0
            if missing:
                via = "" if missing == d else f" (through {describe(oracle.writes[d])})"
                found.append(f"cut: {describe(w)} is in the copy but "
                             f"{describe(oracle.writes[missing])}{via}, which it depends on, "
                             "is not")
    if len(found) > limit:
        found = found[:limit] + [f"cut: … and {len(found) - limit} more writes whose "
                                 "dependencies are missing"]
    return found


def check_index_history(snap: Snapshot, oracle: Oracle) -> list[str]:
    """The index is the state after one committed transaction, row for row."""
    index = snap.index
    if index is None:
        return []
    rel = snap.rel(snap.layout.memory_db)
    tx = oracle.writes.get(index.last_wseq)
    if tx is None or tx.op != "tx":
        return [f"{rel}: meta.last_wseq {index.last_wseq} is no transaction the agent committed"]
    out = []
    if tx.extra["g"] != index.generation:
        out.append(f"{rel}: generation {index.generation} but transaction {tx.seq} was "
                   f"generation {tx.extra['g']}")
    expect: dict[str, int] = {}
    for w in oracle.versions(tx.path):
        if w.op != "tx" or w.seq > tx.seq:
            continue
        if w.extra.get("full"):
            expect = {}
        expect.update(w.extra["rows"])
    got = {path: row.wseq for path, row in index.files.items()}
    if got != expect:
        differ = sorted(p for p in set(got) | set(expect) if got.get(p) != expect.get(p))
        out.append(f"{rel}: rows are not the state after transaction {tx.seq} (they differ on "
                   f"{', '.join(differ[:3])}): pages from two moments, e.g. a -wal from "
                   "another moment")
    for path, row in index.files.items():
        rec = oracle.writes.get(row.wseq)
        if rec is None or rec.op != "row" or rec.extra["h"] != row.hash:
            out.append(f"{rel}: row of {path} (wseq {row.wseq}) is not what the agent wrote")
    return out


def check_index_versions(snap: Snapshot, oracle: Oracle) -> list[str]:
    """Each indexed hash is the hash of the file's current or an earlier version."""
    index = snap.index
    if index is None:
        return []
    out = []
    for path, row in index.files.items():
        data = snap.raw.get(path)
        if data is None:
            continue  # reported by the oracle-free rule
        seqs = snap.line_seqs.get(path)
        current = max(seqs) if seqs else snap.versions.get(path)
        if current is None:
            continue  # torn: reported when read
        ok = any(w.extra.get("h") == row.hash and w.seq <= current
                 for w in oracle.versions(path) if w.op in ("line", "file"))
        if not ok:
            out.append(f"memory index: {path} is indexed at a version the file in the copy "
                       f"has not reached (file version {current}): the index is ahead")
    return out


def check_notes(snap: Snapshot, oracle: Oracle) -> list[str]:
    """Daily notes only grow: a note in the copy is exactly a version the agent wrote."""
    out = []
    notes = snap.rel(snap.layout.notes_dir) + "/"
    for path, data in snap.raw.items():
        if not path.startswith(notes):
            continue
        seqs = snap.line_seqs.get(path)
        if not seqs:
            if oracle.versions(path):
                out.append(f"{path}: empty, but the agent wrote it: a daily note shrank")
            continue
        rec = oracle.writes.get(max(seqs))
        if rec is None and max(seqs) <= oracle.header.get("after", 0):
            continue  # written before this oracle began (an agent started on a restored tree)
        if rec is None or rec.extra.get("h") != digest(data):
            out.append(f"{path}: not a version the agent wrote ({len(data)} bytes): lines "
                       "lost, reordered or torn; daily notes only grow")
    return out


def check_journal_seq(snap: Snapshot, oracle: Oracle, seq: int, limit: int = LIMIT) -> list[str]:
    """Journal mode: the copy is exactly the state at journal record `seq`.

    Every write the oracle puts in a record up to `seq` (its `j`) must be
    visible, and none put in a later record. Writes whose visibility the copy
    cannot tell (a queue file gone, the index outside the tree) and writes with
    no `j` (ledger transitions the SDK held while quiesced) are not judged.
    """
    vis = visibility(snap, oracle)
    found: list[str] = []
    for wseq in sorted(vis):
        w = oracle.writes[wseq]
        j = w.extra.get("j")
        if not isinstance(j, int):
            continue
        if j <= seq and vis[wseq] is False:
            found.append(f"journal: {describe(w)} went into record {j} but is not in the "
                         f"state at record {seq}")
        elif j > seq and vis[wseq] is True:
            found.append(f"journal: {describe(w)} is in the state at record {seq} but went "
                         f"into record {j}, after it")
    if len(found) > limit:
        found = found[:limit] + [f"journal: … and {len(found) - limit} more"]
    return found
