from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cleancut import clock
from cleancut.cli.context import Common, common_options
from cleancut.errors import CleancutError, UsageError
from cleancut.ops.maintenance import journal_retention_for
from cleancut.prune.prune import prune
from cleancut.prune.retention import KeepRules, Verdict, forget_snapshots, plan_forget, plan_named
from cleancut.settings.profiles import MAX_COUNT, get_profile, parse_duration

from .prune import report_lines

F = TypeVar("F", bound=Callable[..., Any])


_PERIODS = {"hourly": "hours", "daily": "days", "weekly": "ISO weeks", "monthly": "months"}


def _count(rule: str) -> Callable[[F], F]:
    if rule == "last":
        text = "Keep the N newest snapshots, full or incremental."
    else:
        text = f"Keep the newest full of each of the N latest {_PERIODS[rule]} that have one (UTC)."
    return click.option(
        f"--keep-{rule}",
        f"keep_{rule}",
        type=click.IntRange(0, MAX_COUNT),
        default=0,
        metavar="N",
        help=text,
    )


def _row(verdict: Verdict) -> str:
    snap = verdict.snapshot
    action = "keep  " if verdict.keep else "forget"
    when = snap.time[:19].replace("T", " ")
    reasons = ", ".join(verdict.reasons)
    return f"  {action}  {snap.id[:12]}  {when}  {snap.kind:<11}  seq {snap.seq:<4}  {reasons}"


@click.command("forget")
@click.argument("snapshot_ids", nargs=-1, metavar="[SNAPSHOT_ID]...")
@click.option("--name", help="Only snapshots of this source.")
@_count("last")
@_count("hourly")
@_count("daily")
@_count("weekly")
@_count("monthly")
@click.option(
    "--keep-within",
    metavar="DURATION",
    help="Keep every snapshot taken within DURATION before the source's newest (e.g. 2d).",
)
@click.option(
    "--profile", help="Profile whose incremental retention applies (default: the repository's)."
)
@click.option("--dry-run", is_flag=True, help="Show what would be kept and forgotten, and why.")
@click.option("--prune", "then_prune", is_flag=True, help="Run prune afterwards.")
@common_options
def command(
    common: Common,
    snapshot_ids: tuple[str, ...],
    name: str | None,
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_within: str | None,
    profile: str | None,
    dry_run: bool,
    then_prune: bool,
) -> None:
    """Forget snapshots that no keep rule (and no kept snapshot) needs, or the
    SNAPSHOT_IDs named; prune frees the space. The newest snapshot of each source
    is always kept unless named."""
    try:
        within = parse_duration(keep_within) if keep_within else 0.0
    except ValueError as exc:
        raise UsageError(f"--keep-within: {exc}") from exc
    rules = KeepRules(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, within)
    if snapshot_ids and not rules.empty:
        raise UsageError("give SNAPSHOT_IDs or keep rules, not both")
    if not snapshot_ids:
        rules.require()  # before asking for a passphrase
    repo = common.open()
    try:
        try:
            settings = get_profile(profile or repo.config.profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        snaps = [s for s in repo.snapshots() if name is None or s.name == name]
        verdicts = (
            plan_named(snaps, list(snapshot_ids))
            if snapshot_ids
            else plan_forget(snaps, rules, clock.now(), settings.incremental_retention)
        )
        gone = (
            [] if dry_run else forget_snapshots(repo, [v.snapshot for v in verdicts if not v.keep])
        )
        report, prune_error = None, None
        if then_prune and not dry_run:
            try:
                report = prune(repo, journal_retention=journal_retention_for(common.config, repo))
            except CleancutError as exc:  # what forget did is still reported below
                prune_error = exc
    finally:
        repo.close()
    forgotten = [v for v in verdicts if not v.keep]
    if common.json:
        common.emit(
            {
                "dry_run": dry_run,
                "snapshots": [
                    {
                        "id": v.snapshot.id,
                        "name": v.snapshot.name,
                        "time": v.snapshot.time,
                        "kind": v.snapshot.kind,
                        "chain": v.snapshot.chain,
                        "seq": v.snapshot.seq,
                        "keep": v.keep,
                        "reasons": v.reasons,
                    }
                    for v in verdicts
                ],
                "forgotten": [v.snapshot.id for v in forgotten] if dry_run else gone,
                "prune": report.to_json() if report else None,
                "prune_error": str(prune_error) if prune_error else None,
            }
        )
        _exit_for(prune_error)
        return
    sources: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        sources.setdefault(verdict.snapshot.name, []).append(verdict)
    for source, items in sources.items():
        kept = sum(1 for v in items if v.keep)
        common.say(f"{source}: keep {kept}, forget {len(items) - kept}")
        for verdict in items:
            common.say(_row(verdict))
    if dry_run:
        skipped = "; --prune skipped" if then_prune else ""
        common.say(f"would forget {len(forgotten)} snapshot(s) (dry run: nothing deleted{skipped})")
    else:
        hint = "" if report or not gone else "; 'cleancut prune' reclaims their space"
        common.say(f"forgot {len(gone)} snapshot(s){hint}")
    if report:
        for line in report_lines(report):
            common.say(line)
    _exit_for(prune_error)


def _exit_for(prune_error: CleancutError | None) -> None:
    if prune_error is not None:
        click.echo(f"cleancut: prune did not run: {prune_error}", err=True)
        sys.exit(prune_error.exit_code)
