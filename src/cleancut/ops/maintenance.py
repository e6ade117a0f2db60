"""Forget and prune as `tick` runs them, from the config file.

Forget applies a source's [retention] keep rules (its own, else the file's);
prune runs repository-wide every `prune_interval`, judged from the newest
prune-run record, so a scheduled prune on any host counts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cleancut import clock
from cleancut.errors import NoSpace
from cleancut.prune.prune import DEFAULT_SAFETY_MARGIN, Pruner
from cleancut.prune.retention import KeepRules, forget_snapshots, plan_forget
from cleancut.repository.records import list_records, write_record
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile
from cleancut.settings.effective import effective
from cleancut.settings.profiles import Profile

PRUNE_RUN = "prune-run"  # written by each scheduled prune: when the next one is due


def keep_rules(rules: dict[str, float]) -> KeepRules:
    return KeepRules(
        last=int(rules.get("keep_last", 0)),
        hourly=int(rules.get("keep_hourly", 0)),
        daily=int(rules.get("keep_daily", 0)),
        weekly=int(rules.get("keep_weekly", 0)),
        monthly=int(rules.get("keep_monthly", 0)),
        within=float(rules.get("keep_within", 0.0)),
    )


def forget_due(
    repo: Repository, config: ConfigFile, source: str, now: datetime, profile: Profile
) -> list[str]:
    """Forget what the source's keep rules no longer keep (under the source's `profile`, as
    the caller resolved it); the ids forgotten."""
    rules = config.retention_for(source)
    if not rules:
        return []
    mine = [s for s in repo.snapshots() if s.name == source]
    verdicts = plan_forget(mine, keep_rules(rules), now, profile.incremental_retention)
    return forget_snapshots(repo, [v.snapshot for v in verdicts if not v.keep])


def prune_due(repo: Repository, config: ConfigFile, now: datetime) -> bool:
    if config.prune_interval is None:
        return False
    runs = list_records(repo, PRUNE_RUN)
    if not runs:
        return True
    last = clock.from_iso(runs[-1]["time"])
    return (now - last).total_seconds() >= config.prune_interval


def run_prune(repo: Repository, config: ConfigFile) -> str:
    margin = config.prune_safety_margin or DEFAULT_SAFETY_MARGIN
    report = Pruner(
        repo, safety_margin=margin, journal_retention=journal_retention_for(config, repo)
    ).run()
    done = (
        f"{len(report.deleted)} pack(s) deleted, {len(report.marked)} marked, "
        f"{len(report.repacked)} repacked"
    )
    try:
        write_record(repo, {"type": PRUNE_RUN, "time": clock.iso(clock.now()), **report.to_json()})
    except NoSpace:  # the run is done; unrecorded, the next tick prunes again: harmless
        return done + "; the run is not recorded (the repository's filesystem is full)"
    return done


def journal_retention_for(config: ConfigFile, repo: Repository) -> Callable[[str], float]:
    """Each source's journal retention: its own profile's, as a backup of it would stack it."""
    profile = repo.config.profile

    def retention(name: str) -> float:
        # A source the file does not name (any more) keeps the shared layers' retention.
        source = name if name in config.sources else None
        return effective(config, source, profile, {}).profile.incremental_retention

    return retention
