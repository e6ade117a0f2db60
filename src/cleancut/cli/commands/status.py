"""`cleancut status`: the health of each source, from the repository alone.

Each source is judged against the profile it is backed up with: its own in the
config file, else the config file's shared settings, else the repository's
(ops/status.py).

Exit codes: 0 whatever the state, so a glance at a terminal is never an "error".
With --check (for monitoring): 0 ok, 3 warn, 4 critical; an empty repository
(nothing backed up yet) counts as critical there. Failing to open the repository
keeps its usual codes (1, 10, ...).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from cleancut import clock
from cleancut.cli.cells import cell
from cleancut.cli.context import Common, common_options
from cleancut.ops.health import SourceHealth
from cleancut.ops.health_text import restore_test_text, success_rate_text
from cleancut.ops.status import StatusOutcome, status
from cleancut.pathtext import shown_path


@click.command("status")
@click.option("--source", help="Only this source.")
@click.option(
    "--check", is_flag=True, help="Exit 0 for ok, 3 for warn, 4 for critical (for monitoring)."
)
@common_options
def command(common: Common, source: str | None, check: bool) -> StatusOutcome:
    """Health of each source: fulls, chains, restore tests, success rates, quiesce misses.

    Each source is ok, warn or critical, with the reasons. Without --check the exit
    code is 0 whatever the state.
    """
    now = clock.now()
    repo = common.open()
    try:
        outcome = status(repo, common.config, now, source, check)
    finally:
        repo.close()
    if common.json:
        common.emit(outcome.to_json())
    elif not outcome.sources:
        click.echo("no backups yet: the repository holds no snapshot and no backup attempt")
    else:
        _print(outcome.sources)
    return outcome


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{clock.age_text(seconds)} ago"


def _rate(h: SourceHealth, window: str) -> str:
    return success_rate_text(h, window, none="-")


def _print(sources: list[SourceHealth]) -> None:
    table = Table(box=None)
    for col in (
        "source",
        "state",
        "last full",
        "chain",
        "last incr",
        "restore test",
        "ok 7d",
        "ok 30d",
        "misses",
    ):
        table.add_column(col)
    for h in sources:
        chain = (
            f"{h.chain_length} long, {clock.age_text(h.chain_age_s)}"
            if h.chain_age_s is not None
            else "-"
        )
        table.add_row(
            cell(h.name),
            h.state,
            _age(h.last_full_age_s),
            chain,
            _age(h.last_incremental_age_s),
            restore_test_text(h),
            _rate(h, "7d"),
            _rate(h, "30d"),
            str(h.consecutive_quiesce_misses),
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: never cut names or reasons
    console.print(table)
    for h in sources:
        for finding in h.findings:
            click.echo(f"{finding.state}: {shown_path(h.name)}: {finding.reason}")
