"""How the simulated agent marks what it writes, shared by the agent and the checker.

Every write carries its global sequence number (`wseq`) inside what it writes,
so a checker holding only a copy can tell which writes the copy contains:

- JSON files and JSONL lines: a `"wseq"` field (sessions.json: per entry; the
  file's version is the largest);
- Markdown: a last line `<!-- wseq N -->` (a workspace file rewritten in place
  that lacks it was copied mid-rewrite); every daily-note line ends with one;
- SQLite: a `wseq` column on rows, and `meta.last_wseq` per transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

WSEQ = "wseq"
_MD_TAIL = re.compile(rb"<!-- wseq (\d+) -->\n\Z")
_NOTE_LINE = re.compile(rb".*<!-- wseq (\d+) -->\Z")


def marker(seq: int) -> str:
    return f"<!-- wseq {seq} -->"


def md_version(data: bytes) -> int | None:
    """The version of a workspace Markdown file, or None if its tail marker is missing."""
    found = _MD_TAIL.search(data[-64:])
    return int(found.group(1)) if found else None


def note_seqs(data: bytes) -> list[int] | None:
    """The wseq of each daily-note line, or None if a line lacks its marker (torn or foreign)."""
    if data and not data.endswith(b"\n"):
        return None
    seqs = []
    for line in data.splitlines():
        found = _NOTE_LINE.match(line)
        if not found:
            return None
        seqs.append(int(found.group(1)))
    return seqs


def json_version(obj: Any) -> int | None:
    """A whole-file JSON version: its `wseq`, or for sessions.json the newest entry's."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get(WSEQ), int):
        return obj[WSEQ]
    found = [v.get(WSEQ) for v in obj.values() if isinstance(v, dict)]
    seqs = [s for s in found if isinstance(s, int)]
    return max(seqs) if seqs else None


def action_key(kind: str, *parts: object) -> str:
    """An idempotency key from an action's logical position (never from an attempt)."""
    text = "\x1f".join([kind, *map(str, parts)])
    return f"{kind}-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def tool_key(session_id: str, call_index: int) -> str:
    return action_key("tool", session_id, call_index)


def cron_key(job_id: str, slot: int) -> str:
    return action_key("cron", job_id, slot)


def delivery_key(queue_id: str) -> str:
    return action_key("delivery", queue_id)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def json_file(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode() + b"\n"
