"""The state rules a consistent copy satisfies, checked on a parsed Snapshot.

Two standards. A *quiesced* copy was taken between units of work: every rule
holds exactly (sessions.json matches its transcript's end, every tool call has
its result, nothing is left running or in flight but what the backup recorded).
A *crash-consistent* copy (`quiesced=False`: one instant, e.g. a frozen
process) may catch a unit of work half done, so the rules relax to what holds
at every instant of this agent's write order: sessions.json is never *ahead*
of its transcript, a result never lacks its call, jobs.json never ahead of its
run log, and so on. A naive copy fails even the relaxed standard.

A journal state (`snap.journaled`) is held to the crash-consistent standard,
plus what journal mode makes one record (journalio.py): a delivery's receipt
and its acknowledge, the two files of a credential refresh.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from typing import Any

from cleancut.sdk.ledger import TRANSITIONS as LEDGER_TRANSITIONS

from .formats import digest, tool_key
from .snapshot import Snapshot

UNSETTLED = ("intent", "started", "unknown")
_NEXT = LEDGER_TRANSITIONS  # the SDK's own state machine: the checker holds copies to it
TOOL_KINDS = {"edit": "workspace.edit", "message": "message.send"}
_CALL = re.compile(r"call_(\d+)\Z")


def _is_cron_session(key: str) -> bool:
    return key.startswith("agent:main:cron:")


def check_sessions(snap: Snapshot) -> list[str]:
    """sessions.json against each transcript: turn count, last entry id, token totals."""
    out: list[str] = []
    rel_index = snap.rel(snap.layout.sessions_index)
    index = snap.json.get(rel_index)
    if not isinstance(index, dict):
        if rel_index not in snap.present:
            out.append(f"{rel_index}: missing")
        return out  # unparseable: already reported
    listed = set()
    for key, entry in index.items():
        sid = entry.get("sessionId") if isinstance(entry, dict) else None
        if not isinstance(sid, str):
            out.append(f"{rel_index}: entry {key!r} has no sessionId")
            continue
        rel = snap.rel(snap.layout.transcript(sid))
        listed.add(rel)
        lines = snap.jsonl.get(rel)
        if lines is None:
            out.append(f"{rel_index}: session {key!r} has no transcript {rel}")
            continue
        out += _check_session_entry(snap, key, entry, rel, lines)
    if snap.quiesced:
        for rel in snap.jsonl:
            if rel.startswith(snap.rel(snap.layout.sessions_dir) + "/") and rel not in listed:
                out.append(f"{rel}: transcript not listed in sessions.json")
    return out


def _check_session_entry(snap: Snapshot, key: str, entry: dict[str, Any], rel: str,
                         lines: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    ids = [o.get("id") for o in lines[1:]]
    last_id = entry.get("lastEntryId")
    if snap.quiesced:
        if ids and last_id != ids[-1]:
            out.append(f"sessions.json: {key!r} lastEntryId {last_id!r} is not the last entry "
                       f"of {rel} ({ids[-1]!r})")
        upto = len(lines)
    elif not last_id:
        upto = 1  # no entry yet: the header alone
    elif last_id in ids:
        upto = ids.index(last_id) + 2
    else:
        out.append(f"sessions.json: {key!r} lastEntryId {last_id!r} is not in {rel}: "
                   "sessions.json is ahead of its transcript")
        return out
    prefix = lines[1:upto]
    turns = [o for o in prefix if o.get("type") == "turn"]
    usage = [o["message"]["usage"] for o in prefix
             if o.get("type") == "message" and isinstance(o.get("message"), dict)
             and isinstance(o["message"].get("usage"), dict)]
    expect = {
        "turns": len(turns),
        "compactionCount": sum(o.get("type") == "compaction" for o in prefix),
        "inputTokens": sum(u.get("input", 0) for u in usage),
        "outputTokens": sum(u.get("output", 0) for u in usage),
    }
    expect["totalTokens"] = expect["inputTokens"] + expect["outputTokens"]
    for name, want in expect.items():
        if entry.get(name) != want:
            out.append(f"sessions.json: {key!r} {name} is {entry.get(name)!r} but {rel} "
                       f"says {want}")
    for n, marker in enumerate(turns, start=1):
        if marker.get("turn") != n:
            out.append(f"{rel}: turn marker {marker.get('turn')!r} where {n} was due")
            break
    return out


def _tool_calls(lines: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], Counter,
                                                      dict[str, dict[str, Any]]]:
    calls: dict[str, dict[str, Any]] = {}
    results: Counter = Counter()
    result_of: dict[str, dict[str, Any]] = {}
    for o in lines:
        msg = o.get("message")
        if o.get("type") != "message" or not isinstance(msg, dict):
            continue
        if msg.get("role") == "assistant":
            for item in msg.get("content") or []:
                if isinstance(item, dict) and item.get("type") == "toolCall":
                    calls[str(item.get("id"))] = item
        elif msg.get("role") == "toolResult":
            results[str(msg.get("toolCallId"))] += 1
            result_of[str(msg.get("toolCallId"))] = msg
    return calls, results, result_of


def check_tools(snap: Snapshot) -> list[str]:
    """Tool call and result one to one; a side-effecting call has exactly one ledger action."""
    out: list[str] = []
    owner: dict[str, str] = {}  # ledger key -> the call that uses it
    sessions_dir = snap.rel(snap.layout.sessions_dir) + "/"
    for rel, lines in snap.jsonl.items():
        if not rel.startswith(sessions_dir) or not lines:
            continue
        sid = lines[0].get("id")
        calls, results, result_of = _tool_calls(lines)
        for cid, n in results.items():
            if cid not in calls:
                out.append(f"{rel}: tool result for {cid!r} without its call")
            elif n > 1:
                out.append(f"{rel}: tool call {cid!r} has {n} results")
        for cid, item in calls.items():
            done = results.get(cid, 0) > 0
            if not done and snap.quiesced:
                out.append(f"{rel}: tool call {cid!r} has no result")
            kind = TOOL_KINDS.get(str(item.get("name")))
            if kind is None:
                continue
            key = item.get("idempotencyKey")
            found = _CALL.match(str(cid))
            if not found or key != tool_key(str(sid), int(found.group(1))):
                out.append(f"{rel}: tool call {cid!r} key {key!r} is not derived from its "
                           "position")
                continue
            if key in owner:
                out.append(f"ledger: key {key} used by two calls ({owner[key]} and {rel} {cid})")
            owner[key] = f"{rel} {cid}"
            action = snap.ledger.get(key)
            if not action:
                if done or snap.quiesced:
                    out.append(f"{rel}: side-effecting call {cid!r} has no ledger action ({key})")
                continue
            if action[0].get("kind") != kind:
                out.append(f"ledger: {key} is a {action[0].get('kind')!r} action, but call "
                           f"{cid!r} in {rel} is {kind!r}")
            receipt = (result_of.get(cid, {}).get("details") or {}).get("receipt")
            if receipt and not any(a.get("receipt") == receipt for a in action):
                out.append(f"{rel}: result of {cid!r} reports receipt {receipt} the ledger "
                           f"does not hold ({key})")
    return out


def check_ledger(snap: Snapshot, inflight_ok: Collection[str]) -> list[str]:
    """Each key one action in a valid order; nothing left in flight in a quiesced copy."""
    out: list[str] = []
    for key, lines in snap.ledger.items():
        state: str | None = None
        for line in lines:
            nxt = line.get("state")
            if nxt not in _NEXT[state]:
                if state is None:
                    out.append(f"ledger: {key} has a {nxt} without its intent")
                elif nxt == "intent":
                    out.append(f"ledger: {key} has a second intent: one key, two actions")
                else:
                    out.append(f"ledger: {key} goes {state or 'nowhere'} -> {nxt}")
                break
            state = nxt
        if snap.quiesced and state in UNSETTLED and key not in inflight_ok:
            out.append(f"ledger: {key} is still {state} in a quiesced snapshot and was not "
                       "recorded as in flight")
    return out


def check_queue(snap: Snapshot) -> list[str]:
    """A queue file still present has no receipt, else a restore would send it twice.

    Not quiesced, it is accepted: between the receipt and the acknowledge every
    delivery is in this state, and the copy holds both the queue file's key and
    the receipt, so recovery can acknowledge it instead of sending it again.
    """
    out: list[str] = []
    if not (snap.quiesced or snap.journaled):
        return out
    queue = snap.rel(snap.layout.queue_dir) + "/"
    for rel, obj in snap.json.items():
        if not (rel.startswith(queue) and rel.endswith(".json")):
            continue
        key = obj.get("idempotencyKey") if isinstance(obj, dict) else None
        states = [line.get("state") for line in snap.ledger.get(str(key), [])]
        if "receipt" in states:
            out.append(f"{rel}: still queued but its delivery {key} has a receipt: a restore "
                       "would send it twice")
    return out


def check_cron(snap: Snapshot) -> list[str]:
    """lastRunAtMs is the newest run, nextRunAtMs later, nothing marked running."""
    out: list[str] = []
    rel_jobs = snap.rel(snap.layout.cron_jobs)
    doc = snap.json.get(rel_jobs)
    if not isinstance(doc, dict):
        return [f"{rel_jobs}: missing"] if rel_jobs not in snap.present else []
    for job in doc.get("jobs") or []:
        jid, state = job.get("id"), job.get("state") or {}
        rel_log = snap.rel(snap.layout.cron_run_log(str(jid)))
        runs = snap.jsonl.get(rel_log, [])
        last = state.get("lastRunAtMs")
        if state.get("runningAtMs") is not None and snap.quiesced:
            out.append(f"{rel_jobs}: job {jid} is marked running in a quiesced snapshot")
        newest = runs[-1].get("ts") if runs else None
        if snap.quiesced and last != newest:
            out.append(f"{rel_jobs}: job {jid} lastRunAtMs {last} but its newest run in "
                       f"{rel_log} is {newest}")
        elif not snap.quiesced and last is not None:
            oldest = runs[0].get("ts") if runs else None
            trimmed = oldest is not None and last < oldest
            if not trimmed and last not in {r.get("ts") for r in runs}:
                out.append(f"{rel_jobs}: job {jid} lastRunAtMs {last} is not a run in "
                           f"{rel_log}: jobs.json is ahead of its run log")
        nxt = state.get("nextRunAtMs")
        if last is not None and not (isinstance(nxt, int) and nxt > last):
            out.append(f"{rel_jobs}: job {jid} nextRunAtMs {nxt} is not after lastRunAtMs {last}")
        for run in runs:
            states = [line.get("state") for line in snap.ledger.get(str(run.get("key")), [])]
            if "receipt" not in states:
                out.append(f"{rel_log}: run at {run.get('ts')} has no ledger receipt "
                           f"({run.get('key')})")
    return out


def check_credentials(snap: Snapshot) -> list[str]:
    """auth-profiles.json never points at a token creds.json does not hold yet."""
    creds = snap.json.get(snap.rel(snap.layout.creds))
    auth = snap.json.get(snap.rel(snap.layout.auth_profiles))
    if not isinstance(creds, dict) or not isinstance(auth, dict):
        return []
    have = creds.get("tokenId")
    out = []
    for name, profile in (auth.get("profiles") or {}).items():
        want = profile.get("tokenId")
        comparable = isinstance(want, int) and isinstance(have, int)
        whole = snap.quiesced or snap.journaled
        if comparable and (want > have or (whole and want != have)):
            out.append(f"auth-profiles.json: profile {name} uses token {want} but "
                       f"creds.json holds token {have}")
    return out


def check_memory(snap: Snapshot) -> list[str]:
    """The index is never ahead of the notes: each row is of the file's current or an earlier
    version. Without the oracle: a daily note's row is a prefix of the note, a workspace
    file's row is of a version no newer than the file's."""
    out: list[str] = []
    index = snap.index
    if index is None:
        return out
    for rel, row in index.files.items():
        data = snap.raw.get(rel)
        if data is None:
            out.append(f"memory index: {rel} is indexed but missing from the copy")
            continue
        if row.hash == digest(data):
            continue
        if rel.startswith(snap.rel(snap.layout.notes_dir) + "/"):
            if row.size > len(data) or digest(data[: row.size]) != row.hash:
                out.append(f"memory index: {rel} indexed at {row.size} bytes that are not a "
                           f"prefix of the note ({len(data)} bytes): the index is ahead")
        else:
            version = snap.versions.get(rel)
            if version is not None and row.src_wseq > version:
                out.append(f"memory index: {rel} indexed at version {row.src_wseq}, the file "
                           f"is at {version}: the index is ahead")
    return out
