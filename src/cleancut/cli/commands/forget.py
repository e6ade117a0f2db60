"""`cleancut forget`: forget snapshots by keep rules or by id, and prune after if asked.

The plan and the deletion are prune/forget.py's; this prints the verdicts (keep or
forget, and why) per source. A --prune that could not run leaves what forget did in
place, says why on stderr and exits with the prune's code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cleancut.cli.context import Common, common_options
from cleancut.errors import UsageError
from cleancut.ops.maintenance import journal_retention_for
from cleancut.prune.forget import ForgetOutcome, forget
from cleancut.prune.retention import KeepRules, Verdict
from cleancut.settings.profiles import MAX_COUNT, parse_duration

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
) -> ForgetOutcome:
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
        # The config file is read for the prune's journal retention only when it runs.
        pruning = then_prune and not dry_run
        outcome = forget(
            repo,
            list(snapshot_ids),
            rules,
            name,
            profile,
            dry_run,
            then_prune,
            journal_retention_for(common.config, repo) if pruning else None,
        )
    finally:
        repo.close()
    if common.json:
        common.emit(outcome.to_json())
        return _said_why(outcome)
    sources: dict[str, list[Verdict]] = {}
    for verdict in outcome.verdicts:
        sources.setdefault(verdict.snapshot.name, []).append(verdict)
    for source, items in sources.items():
        kept = sum(1 for v in items if v.keep)
        common.say(f"{source}: keep {kept}, forget {len(items) - kept}")
        for verdict in items:
            common.say(_row(verdict))
    report, gone = outcome.prune, outcome.gone
    if dry_run:
        skipped = "; --prune skipped" if then_prune else ""
        common.say(
            f"would forget {len(outcome.forgotten)} snapshot(s) (dry run: nothing deleted{skipped})"
        )
    else:
        hint = "" if report or not gone else "; 'cleancut prune' reclaims their space"
        common.say(f"forgot {len(gone)} snapshot(s){hint}")
    if report:
        for line in report_lines(report):
            common.say(line)
    return _said_why(outcome)


def _said_why(outcome: ForgetOutcome) -> ForgetOutcome:
    """The outcome, once the line saying why the prune did not run is on stderr."""
    if outcome.prune_error is not None:
        click.echo(f"cleancut: prune did not run: {outcome.prune_error}", err=True)
    return outcome
