"""Operational records: backup attempts, restore-test results, verification marks.

Each is a small encrypted object under records/, written once and never
changed, so the history of what was tried and what passed lives in the
repository itself: a fresh host with the passphrase sees it all.
A record is a JSON object with at least "type" and "time" (ISO 8601 UTC).

Growth is bounded: prune calls `compact_records`, which deletes records older
than RECORD_RETENTION that nothing reads any more (see its docstring).
"""

from __future__ import annotations

import copy
import weakref
from datetime import datetime, timedelta
from typing import Any

from cleancut.clock import from_iso
from cleancut.errors import IntegrityError, ObjectNotFound

from .objects import open_json, seal_json
from .repository import Repository

RECORDS_PREFIX = "records/"
RECORD_KIND = "record"

BACKUP_ATTEMPT = "backup-attempt"
RESTORE_TEST = "restore-test"
JOURNAL_GAP = "journal-gap"  # a source's journal could not be continued: the next backup is a full
JOURNAL_COMPACTED = "journal-compacted"  # prune dropped a lineage's batches up to a record
FORGOTTEN = "forgotten"  # forget deleted these snapshot records on purpose
COPY = "copy"  # src/cleancut/replication/copy.py
PRUNE_RUN = "prune-run"  # src/cleancut/ops/maintenance.py
RECORD_RETENTION = timedelta(days=31)  # longer than status's widest window (30 days)


def write_record(repo: Repository, record: dict[str, Any]) -> str:
    if "type" not in record or "time" not in record:
        raise ValueError("a record needs a type and a time")
    record_id, stored = seal_json(repo.keys, RECORD_KIND, record)
    repo.write_object(RECORDS_PREFIX + record_id, stored)
    return record_id


_opened: weakref.WeakKeyDictionary[Repository, dict[str, Any]] = weakref.WeakKeyDictionary()
"""Records already read and verified, per open repository, seeded from the local cache
(repository/cache.py). A record's name is the hash of its stored bytes and it is never
rewritten, so one read is enough: a backup's plan lists the records (a month of attempt
records at one backup every 5 minutes is about 8,900 objects), and the status page,
metrics and health list them on every daemon tick; on S3 each read is a GET. Only the
listing is repeated, so a deleted record drops out. `check` reads every one afresh."""


def _read_records(repo: Repository, fresh: bool = False) -> list[tuple[str, Any, str | None]]:
    """(record id, record or None, why it is unreadable or None) for every record under
    records/; a record deleted between the listing and its read (prune's bookkeeping) is
    left out. Each caller gets its own copy of a record. With `fresh`, every record is
    read and authenticated from the repository, whatever was cached."""
    opened = _opened.get(repo)
    if opened is None or fresh:
        opened = {} if fresh else repo.cache.records()
        _opened[repo] = opened
    names = repo.names(RECORDS_PREFIX)
    gone = opened.keys() - set(names)
    for rid in gone:
        del opened[rid]
    added: dict[str, Any] = {}
    out: list[tuple[str, Any, str | None]] = []
    for rid in names:
        if rid not in opened:
            try:
                stored = repo.read_object(RECORDS_PREFIX + rid)
                opened[rid] = added[rid] = open_json(repo.keys, RECORD_KIND, rid, stored)
            except ObjectNotFound:
                continue
            except IntegrityError as exc:
                out.append((rid, None, str(exc)))  # damaged ones are read again: a repair shows
                continue
        out.append((rid, copy.deepcopy(opened[rid]), None))
    repo.cache.update_records(added, gone if not fresh else set())
    return out


def list_records(repo: Repository, record_type: str | None = None) -> list[dict[str, Any]]:
    """Every readable record (of one type), oldest first; damaged ones are skipped with a
    warning on the repository."""
    out = []
    for rid, record, problem in _read_records(repo):
        if problem is not None:
            repo.warnings.append(f"ignored {problem}")
            continue
        if record_type is None or record.get("type") == record_type:
            record["id"] = rid
            out.append(record)
    out.sort(key=lambda r: (r.get("time", ""), r["id"]))
    return out


def record_forgotten(repo: Repository, snapshot_ids: list[str], when: str) -> str:
    """Say which snapshots forget deletes, before it deletes them: a snapshot that
    vanishes without such a record was deleted outside cleancut."""
    return write_record(repo, {"type": FORGOTTEN, "time": when, "snapshots": sorted(snapshot_ids)})


def missing_tips(repo: Repository, present: set[str]) -> list[tuple[str, str, str]]:
    """(source name, snapshot id, attempt record id) for each source whose newest
    successful backup attempt names a snapshot that is gone and that no forget removed."""
    records = list_records(repo)
    forgotten = {
        sid
        for r in records
        if r.get("type") == FORGOTTEN
        for sid in r.get("snapshots", [])
        if isinstance(sid, str)
    }
    newest: dict[str, dict[str, Any]] = {}
    for r in records:  # oldest first: the last one per name wins
        if r.get("type") == BACKUP_ATTEMPT and r.get("ok") and isinstance(r.get("snapshot"), str):
            newest[str(r.get("name"))] = r
    return [
        (name, r["snapshot"], r["id"])
        for name, r in sorted(newest.items())
        if r["snapshot"] not in present and r["snapshot"] not in forgotten
    ]


def damaged_records(repo: Repository) -> list[tuple[str, str]]:
    """(record id, why) for every record under records/ that fails authentication."""
    out = []
    for rid, record, problem in _read_records(repo, fresh=True):
        if problem is not None:
            out.append((rid, problem))
        elif not isinstance(record, dict) or "type" not in record or "time" not in record:
            out.append((rid, "record has no type or time"))
    return out


def failed_snapshots(repo: Repository) -> set[str]:
    """Snapshots whose latest restore test failed: never a parent again."""
    return failed_among(list_records(repo, RESTORE_TEST))


def failed_among(records: list[dict[str, Any]]) -> set[str]:
    """failed_snapshots from records already read (list_records, oldest first)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("type") == RESTORE_TEST:
            latest[record["snapshot"]] = record
    return {sid for sid, record in latest.items() if not record.get("passed")}


def _newest(records: list[dict[str, Any]], key: str) -> set[str]:
    """Ids of the newest record per value of `key` (records oldest first)."""
    newest: dict[Any, str] = {}
    for r in records:
        newest[r.get(key)] = r["id"]
    return set(newest.values())


def _needed_attempts(attempts: list[dict[str, Any]]) -> set[str]:
    """Per source: the newest attempt, the newest successful one (check's missing-tip
    test), and the unbroken run of quiesce misses up to now (status counts it)."""
    keep = _newest(attempts, "name") | _newest([a for a in attempts if a.get("ok")], "name")
    for name in {a.get("name") for a in attempts}:
        for a in reversed([a for a in attempts if a.get("name") == name]):
            keep.add(a["id"])
            if not a.get("quiesce_missed"):
                break
    return keep


def needed_records(records: list[dict[str, Any]], snapshots: set[str]) -> set[str]:
    """The ids of the old records something still reads (records oldest first)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_type.setdefault(str(r.get("type")), []).append(r)
    attempts = by_type.get(BACKUP_ATTEMPT, [])
    keep = _needed_attempts(attempts)
    tests = by_type.get(RESTORE_TEST, [])
    keep |= _newest(tests, "name") | _newest([t for t in tests if t.get("passed")], "name")
    keep |= {t["id"] for t in tests if t.get("snapshot") in snapshots}
    keep |= _newest(by_type.get(COPY, []), "to")
    keep |= _newest([c for c in by_type.get(COPY, []) if c.get("ok")], "to")
    keep |= _newest(by_type.get(PRUNE_RUN, []), "type")
    keep |= _newest(by_type.get(JOURNAL_GAP, []), "name")
    named = {a.get("snapshot") for a in attempts if a["id"] in keep}
    keep |= {f["id"] for f in by_type.get(FORGOTTEN, []) if named & set(f.get("snapshots", []))}
    return keep


COMPACTED_TYPES = {BACKUP_ATTEMPT, RESTORE_TEST, COPY, PRUNE_RUN, JOURNAL_GAP, FORGOTTEN}


def compact_records(repo: Repository, now: datetime, snapshots: set[str]) -> int:
    """Delete the records older than RECORD_RETENTION that nothing reads any more;
    returns how many. Only the types in COMPACTED_TYPES go; prune-mark, journal-compacted
    and types this version does not know are kept. `snapshots`: the ids that exist."""
    records = list_records(repo)
    needed = needed_records(records, snapshots)
    cutoff = now - RECORD_RETENTION
    gone = 0
    for r in records:
        if r.get("type") not in COMPACTED_TYPES or r["id"] in needed:
            continue
        try:
            old = from_iso(str(r["time"])) < cutoff
        except ValueError:
            continue
        if old:
            try:
                repo.delete_object(RECORDS_PREFIX + r["id"])
            except ObjectNotFound:
                continue
            gone += 1
    return gone
