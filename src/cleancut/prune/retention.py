"""Retention: which snapshots `forget` keeps, and why.

`plan_forget` is a pure function of the snapshots, the rules and the time, so it
can be shown (`forget --dry-run`) exactly as it will be applied, and tested
without a repository; `forget_snapshots` then deletes the records.

The rules, per source name (restic's, adapted to chains):

- The newest snapshot of every source is always kept, whatever the rules: a
  source that stopped backing up keeps its last state (and, by the closure
  below, the chain that state needs). Only `forget SNAPSHOT_ID`, where the
  operator names it, removes it (`plan_named`). "Newest" is in chain order
  (`snapshot.chain_order`), so a clock stepped back cannot change which it is.
- `last N` and `within D` match any snapshot, full or incremental: "the last N
  backups" and "everything from the last D before the newest" mean what an
  operator would restore from now. `within` counts back from the source's newest
  snapshot, not from the clock, so a source that stopped backing up is not
  emptied by the passing of time. `last >= 1` therefore always keeps the newest.
- `hourly/daily/weekly/monthly N` match FULL snapshots only: the newest full of
  each of the N most recent UTC hours/days/ISO weeks/months that have one. Long
  term history is then made of snapshots that restore without a chain, and does
  not pin whole chains of incrementals.
- An incremental is also kept while it is younger than the profile's
  incremental retention (docs/architecture.md, the profile table), counted from
  now. Older ones go, unless a rule above matches them.
- Dependency closure last: every ancestor of a kept incremental, back to its
  chain's full, is kept with the reason "needed by <child>". Retention never
  deletes a snapshot that a kept snapshot depends on, so old incrementals leave
  from the tail of their chain, never from the middle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cleancut import clock
from cleancut.clock import from_iso, iso
from cleancut.errors import NoSpace, UsageError
from cleancut.repository.records import record_forgotten
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import OrderKey, Snapshot, chain_order, resolve
from cleancut.settings.profiles import check_count
from cleancut.settings.units import check_duration, format_duration

from .mark import observe_segments


@dataclass(frozen=True)
class KeepRules:
    """Counts of 0 (and a `within` of 0 seconds) mean the rule is not given."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    within: float = 0.0  # seconds before the source's newest snapshot

    def __post_init__(self) -> None:
        try:
            for name in ("last", "hourly", "daily", "weekly", "monthly"):
                check_count(getattr(self, name), f"--keep-{name}")
            check_duration(self.within, format_duration(self.within))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @property
    def empty(self) -> bool:
        return not (
            self.last or self.hourly or self.daily or self.weekly or self.monthly or self.within
        )

    def require(self) -> None:
        """Refuse an empty rule set: forgetting everything is never what a missing
        option meant."""
        if self.empty:
            raise UsageError(
                "no keep rule given: pass at least one of --keep-last, --keep-hourly, "
                "--keep-daily, --keep-weekly, --keep-monthly, --keep-within"
            )


@dataclass
class Verdict:
    snapshot: Snapshot
    keep: bool
    reasons: list[str] = field(default_factory=list)


# Calendar buckets, by UTC time: the newest full snapshot of each bucket is the one kept.
_BUCKETS: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("hourly", lambda t: t.strftime("%Y-%m-%d %Hh")),
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("monthly", lambda t: t.strftime("%Y-%m")),
)


def _orders(snapshots: list[Snapshot]) -> dict[str, OrderKey]:
    """Each snapshot's place among its source's, oldest first, in chain order (chains
    by their full, then sequence numbers): a clock stepped back cannot make the newest
    data look old to keep-last, nor to the newest-snapshot rule."""
    by_name: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        by_name.setdefault(snap.name, []).append(snap)
    keys: dict[str, OrderKey] = {}
    for group in by_name.values():
        key = chain_order(group)
        keys.update({s.id: key(s) for s in group})
    return keys


def plan_forget(
    snapshots: list[Snapshot],
    rules: KeepRules,
    now: datetime,
    incremental_retention: float,
) -> list[Verdict]:
    """One verdict per snapshot, by name, then in chain order. Refuses an empty rule set."""
    rules.require()
    reasons: dict[str, list[str]] = {s.id: [] for s in snapshots}
    order = _orders(snapshots)
    by_name: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        by_name.setdefault(snap.name, []).append(snap)
    for group in by_name.values():
        group.sort(key=lambda s: order[s.id], reverse=True)  # newest first
        _apply_rules(group, rules, now, incremental_retention, reasons)
        if not reasons[group[0].id]:
            reasons[group[0].id].append("newest of its source")
    kept = {sid for sid, why in reasons.items() if why}
    _close_dependencies(snapshots, kept, reasons, order)
    verdicts = []
    for snap in sorted(snapshots, key=lambda s: (s.name, order[s.id])):
        why = reasons[snap.id]
        if why:
            verdicts.append(Verdict(snap, True, why))
        else:
            verdicts.append(Verdict(snap, False, [_why_not(snap, now, incremental_retention)]))
    return verdicts


def _apply_rules(
    group: list[Snapshot],
    rules: KeepRules,
    now: datetime,
    retention: float,
    reasons: dict[str, list[str]],
) -> None:
    """The keep rules for one source; `group` is newest first."""
    for i, snap in enumerate(group[: rules.last]):
        reasons[snap.id].append(f"keep-last ({i + 1} of {rules.last})")
    if rules.within and group:
        newest = from_iso(group[0].time)
        for snap in group:
            if (newest - from_iso(snap.time)).total_seconds() <= rules.within:
                reasons[snap.id].append(f"keep-within {format_duration(rules.within)} of newest")
    fulls = [s for s in group if s.is_full]
    for rule, bucket_of in _BUCKETS:
        wanted = getattr(rules, rule)
        seen: set[str] = set()
        for snap in fulls:
            if len(seen) >= wanted:
                break
            bucket = bucket_of(from_iso(snap.time))
            if bucket not in seen:
                seen.add(bucket)
                reasons[snap.id].append(f"keep-{rule} {bucket}")
    for snap in group:
        if not snap.is_full and clock.seconds_since(snap.time, now) < retention:
            reasons[snap.id].append(f"incremental younger than {format_duration(retention)}")


def _close_dependencies(
    snapshots: list[Snapshot],
    kept: set[str],
    reasons: dict[str, list[str]],
    order: dict[str, OrderKey],
) -> None:
    """Keep every ancestor of a kept incremental, back to its chain's full.

    A full's `parent` (older records name the snapshot used for change detection)
    is not a dependency: a full restores on its own.
    """
    by_id = {s.id: s for s in snapshots}
    closed: set[str] = set()  # ids whose whole ancestry is known to be kept
    for start in sorted((by_id[sid] for sid in kept), key=lambda s: order[s.id], reverse=True):
        child = start
        visited = {child.id}
        while not child.is_full and child.id not in closed and child.parent:
            parent = by_id.get(child.parent)
            if parent is None or parent.id in visited:
                break  # a broken chain: nothing older to keep (check names the break)
            visited.add(parent.id)
            if parent.id not in kept:
                kept.add(parent.id)
                reasons[parent.id].append(f"needed by {child.id[:12]}")
            child = parent
        closed |= visited


def _why_not(snap: Snapshot, now: datetime, retention: float) -> str:
    if snap.is_full:
        return "no keep rule matches"
    age = max(0, round(clock.seconds_since(snap.time, now)))
    return (
        f"incremental {format_duration(age)} old, beyond the "
        f"{format_duration(retention)} retention, and no keep rule matches"
    )


def forget_snapshots(repo: Repository, snapshots: list[Snapshot]) -> list[str]:
    """Delete the records of forgotten snapshots, children before parents: a run
    interrupted half-way never leaves a snapshot whose ancestor is gone. Their data
    stays until prune; the index segments that exist now are noted for it, so a prune
    run at least a safety margin later can already mark what these snapshots held."""
    if snapshots:
        repo.refuse_if_append_only("forget")
    order = sorted(snapshots, key=lambda s: (s.seq, s.time, s.id), reverse=True)
    if order:  # first: a snapshot gone without this record was deleted outside cleancut
        _record_forgotten(repo, [s.id for s in order])
    for snap in order:
        repo.delete_snapshot(snap.id)
    if order:
        observe_segments(repo)
        repo.sync_cache()
    return [s.id for s in order]


def _record_forgotten(repo: Repository, ids: list[str]) -> None:
    """Write the `forgotten` record; on a full filesystem, in the room of the prune
    reserve (forget frees nothing by itself, and the prune that follows refills it)."""
    try:
        record_forgotten(repo, ids, iso(clock.now()))
    except NoSpace:
        if not repo.release_reserve():
            raise
        record_forgotten(repo, ids, iso(clock.now()))


def plan_named(snapshots: list[Snapshot], refs: list[str]) -> list[Verdict]:
    """`forget SNAPSHOT_ID...`: forget exactly the snapshots the operator names (ids or
    unambiguous prefixes), the newest of a source included. Refused (exit 2) when a
    snapshot not named depends on one that is: naming a link never breaks a chain."""
    named = {resolve(snapshots, ref).id for ref in refs}
    by_id = {s.id: s for s in snapshots}
    for snap in snapshots:
        if snap.id in named or snap.is_full or snap.parent not in named:
            continue
        parent = by_id[snap.parent or ""]
        raise UsageError(
            f"snapshot {parent.id[:12]} is needed by {snap.id[:12]} (seq {snap.seq} of chain "
            f"{(snap.chain or '?')[:12]}): name that one too, or forget by keep rules"
        )
    order = _orders(snapshots)
    return [
        Verdict(s, s.id not in named, ["not named"] if s.id not in named else ["named"])
        for s in sorted(snapshots, key=lambda s: (s.name, order[s.id]))
    ]
