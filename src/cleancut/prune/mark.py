"""The prune-mark record: which index segments prune has seen since when, and which packs
it marked for deletion (with the index entries it took out of the index).

Several records may exist after a crash; `load_state` merges them, `save_state` writes
the merged state as one record and deletes the ones it replaces. The protocol they
serve is in prune/prune.py's docstring.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from cleancut import clock
from cleancut.clock import iso
from cleancut.repository.index import IndexSegment, PackRecord
from cleancut.repository.records import RECORDS_PREFIX, list_records, write_record
from cleancut.repository.repository import Repository

MARK_TYPE = "prune-mark"

@dataclass
class Mark:
    """A pack recorded for deletion. `record` holds its index entries when the mark took
    it out of the index (so it can be put back); None when no index listed it."""

    pack_id: str
    marked: str
    size: int
    record: PackRecord | None = None


@dataclass
class MarkState:
    seen: dict[str, str] = field(default_factory=dict)  # segment id -> first seen (ISO UTC)
    marks: dict[str, Mark] = field(default_factory=dict)
    record_ids: list[str] = field(default_factory=list)  # the records it was read from


def load_state(repo: Repository) -> MarkState:
    """Merge every prune-mark record (a crash may leave more than one).

    Seen times merge to the earliest (each is a true observation); for a pack
    marked twice, the latest mark wins (its margin ends last).
    """
    state = MarkState()
    for record in list_records(repo, MARK_TYPE):
        state.record_ids.append(record["id"])
        for sid, when in record.get("seen", {}).items():
            if sid not in state.seen or when < state.seen[sid]:
                state.seen[sid] = when
        hidden = {}
        if record.get("index"):
            raw = base64.b64decode(record["index"])
            segment = IndexSegment.decode(raw, f"prune-mark {record['id'][:12]}")
            hidden = {p.pack_id: p for p in segment.packs}
        for item in record.get("packs", []):
            pid = item["id"]
            old = state.marks.get(pid)
            if old is None or item["marked"] >= old.marked:
                state.marks[pid] = Mark(pid, item["marked"], int(item["size"]), hidden.get(pid))
    return state


def save_state(repo: Repository, state: MarkState, now: datetime) -> None:
    """Write the whole state as one new record, then delete the records it replaces."""
    marks = sorted(state.marks.values(), key=lambda m: m.pack_id)
    hidden = [m.record for m in marks if m.record is not None]
    record_id = write_record(
        repo,
        {
            "type": MARK_TYPE,
            "time": iso(now),
            "seen": dict(sorted(state.seen.items())),
            "packs": [
                {"id": m.pack_id, "marked": m.marked, "size": m.size, "hidden": bool(m.record)}
                for m in marks
            ],
            "index": base64.b64encode(IndexSegment(hidden).encode()).decode() if hidden else "",
        },
    )
    for old in state.record_ids:
        repo.delete_object(RECORDS_PREFIX + old)
    state.record_ids = [record_id]


def observe_segments(repo: Repository) -> bool:
    """Record the index segments that exist now, so the next prune that runs at least a
    margin later may mark what they hold (forget calls this after it deletes). Cheap:
    names only. Returns whether anything new was recorded."""
    now = clock.now()
    present = repo.segment_ids()
    state = load_state(repo)
    new = {sid: iso(now) for sid in present if sid not in state.seen}
    if not new:
        return False
    # Only the observation: the marks stay in the records they are in.
    write_record(repo, {"type": MARK_TYPE, "time": iso(now), "seen": new, "packs": []})
    return True
