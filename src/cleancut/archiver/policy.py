"""Which kind of snapshot to take next: a full, or an incremental on the current chain.

A full is taken when the source has no chain, when the chain's full is older
than the profile's maximum full age, when the chain has reached the 72 h cap
(no setting lifts it), when the parent failed verification, when the chain
forked (two snapshots hold one sequence number), when the source's
journal has a gap no full snapshot has covered yet (records are missing, so only
a full is a base its journal can start again from), or on request. Otherwise the
next snapshot is an incremental on the chain's tip: its highest sequence
number, never "the newest by the clock" (a clock stepped back must not fork it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleancut.clock import age_text, from_iso
from cleancut.repository.chain import find_forks
from cleancut.repository.snapshot import Snapshot, chain_order
from cleancut.settings.profiles import CHAIN_CAP


@dataclass(frozen=True)
class Decision:
    kind: str  # "full" or "incremental"
    reason: str
    parent: Snapshot | None  # the snapshot an incremental follows
    chain: str
    seq: int


def latest_of(snapshots: list[Snapshot], name: str) -> Snapshot | None:
    """The source's newest snapshot in chain order: the tip (highest seq) of its newest
    chain, whatever the clock said when each was taken."""
    same = [s for s in snapshots if s.name == name]
    return max(same, key=chain_order(same)) if same else None


def decide(
    snapshots: list[Snapshot],
    name: str,
    now: datetime,
    max_full_age: float,
    failed: set[str],
    force_full: bool = False,
    journal_gaps: Sequence[Mapping[str, Any]] = (),
) -> Decision:
    """`failed`: ids of snapshots that failed verification (a restore test, a check).
    `journal_gaps`: the repository's journal-gap records (journal/repo/ship.py)."""
    latest = latest_of(snapshots, name)

    def full(reason: str) -> Decision:
        return Decision("full", reason, None, os.urandom(16).hex(), 0)

    if force_full:
        return full("requested with --full")
    gap = open_journal_gap(journal_gaps, snapshots, name)
    if gap is not None:
        return full(f"journal gap at seq {gap_range(gap)}; taking a full")
    if latest is None or not latest.chain:
        return full("no chain yet for this source")
    head = next((s for s in snapshots if s.chain == latest.chain and s.is_full), None)
    if head is None:
        return full(f"chain {latest.chain[:12]} has no full snapshot")
    age = (now - from_iso(head.time)).total_seconds()
    if age >= CHAIN_CAP:
        return full(f"chain {latest.chain[:12]} reached the 72h cap ({age_text(age)} old)")
    if age >= max_full_age:
        return full(f"last full is {age_text(age)} old (max {age_text(max_full_age)})")
    bad = chain_failure(snapshots, latest, failed)
    if bad is not None:
        return full(f"parent {bad.id[:12]} failed verification")
    fork = next((f for f in find_forks(snapshots) if f.chain == latest.chain), None)
    if fork is not None:
        return full(f"chain {latest.chain[:12]} forked at seq {fork.seq}; taking a full")
    return Decision(
        "incremental",
        f"chain {latest.chain[:12]} at seq {latest.seq}, full is {age_text(age)} old",
        latest,
        latest.chain,
        latest.seq + 1,
    )


def chain_failure(snapshots: list[Snapshot], latest: Snapshot, failed: set[str]) -> Snapshot | None:
    """The first snapshot of `latest`'s chain, up to it, that failed verification, if any:
    everything after it depends on it, so the chain must not grow."""
    return next(
        (
            s
            for s in sorted(snapshots, key=lambda s: s.seq)
            if s.chain == latest.chain and s.seq <= latest.seq and s.id in failed
        ),
        None,
    )


def open_journal_gap(
    gaps: Sequence[Mapping[str, Any]], snapshots: list[Snapshot], name: str
) -> Mapping[str, Any] | None:
    """The newest journal gap of `name` that no full snapshot taken after it covers.

    A gap means the source's journal cannot continue in the repository; a full
    snapshot taken after it is the base a new journal lineage starts from.
    """
    # Only a full that records its journal seq can start a new lineage (journal ship
    # refuses any other), so only such a full closes the gap.
    fulls = [
        s.time
        for s in snapshots
        if s.name == name and s.is_full and isinstance((s.capture or {}).get("journal_seq"), int)
    ]
    newest_full = max(fulls, default="")
    open_gaps = [g for g in gaps if g.get("name") == name and str(g.get("time", "")) > newest_full]
    return max(open_gaps, key=lambda g: str(g.get("time", ""))) if open_gaps else None


def gap_range(gap: Mapping[str, Any]) -> str:
    first, last = gap.get("from"), gap.get("to")
    return f"{first}" if first == last else f"{first}–{last}"
