"""Backup attempts: one record per try, successful or not.

Snapshots only show the backups that worked. Monitoring needs the ones that did
not (a failed run, a quiesce that timed out), and it needs them on any host, so
each attempt is a small encrypted BACKUP_ATTEMPT record in the repository.
`status` derives success rates and consecutive quiesce misses from them.
"""

from __future__ import annotations

from typing import Any

from cleancut import clock

from .records import BACKUP_ATTEMPT, list_records, write_record
from .repository import Repository

MAX_ERROR_CHARS = 500  # one operator-facing line, never a whole traceback


def record_backup_attempt(
    repo: Repository,
    *,
    name: str,
    ok: bool,
    kind: str | None,
    snapshot_id: str | None,
    error: str | None,
    duration_s: float,
    quiesce_missed: bool = False,
    consistency: str | None = None,
) -> str:
    """Write one BACKUP_ATTEMPT record; returns its id.

    name: the source's catalog name (the snapshot's `name`). kind: "full" or
    "incremental" when the policy had decided, else None. quiesce_missed: the
    agent did not confirm quiesce within its timeout in this backup window (the
    attempt may still have produced a snapshot labelled otherwise). consistency:
    the label of the snapshot taken (quiesced, hooked, frozen, journal, unquiesced).
    """
    record: dict[str, Any] = {
        "type": BACKUP_ATTEMPT,
        "time": clock.iso(clock.now()),
        "name": name,
        "ok": bool(ok),
        "kind": kind,
        "snapshot": snapshot_id,
        "error": (error or "")[:MAX_ERROR_CHARS] or None,
        "duration_s": round(float(duration_s), 3),
        "quiesce_missed": bool(quiesce_missed),
        "consistency": consistency,
    }
    return write_record(repo, record)


def backup_attempts(repo: Repository, name: str | None = None) -> list[dict[str, Any]]:
    """Attempt records (of one source), oldest first."""
    return [r for r in list_records(repo, BACKUP_ATTEMPT) if name is None or r.get("name") == name]
