"""`cleancut diff`: what changed between two snapshots, one change a line.

+ added, - removed, M modified, U metadata only, T type changed; the comparison is
repository/views.py's.
"""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.pathtext import shown_path
from cleancut.repository.views import diff_snapshots


@click.command("diff")
@click.argument("snap_a")
@click.argument("snap_b")
@common_options
def command(common: Common, snap_a: str, snap_b: str) -> None:
    """Show what changed from SNAP_A to SNAP_B.

    + added, - removed, M modified, U metadata only, T type changed. Names are
    escaped as by 'ls' (one change a line); --json keeps the exact names.
    """
    repo = common.open()
    try:
        a, b = repo.find_snapshot(snap_a), repo.find_snapshot(snap_b)
        changes = diff_snapshots(repo, a, b)
    finally:
        repo.close()
    if common.json:
        common.emit({"from": a.id, "to": b.id, "changes": [vars(c) for c in changes]})
        return
    for c in changes:
        click.echo(f"{c.kind} {shown_path(c.path)}")
    counts = {k: sum(1 for c in changes if c.kind == k) for k in "+-MUT"}
    click.echo(
        f"added {counts['+']}, removed {counts['-']}, modified {counts['M']}, "
        f"metadata {counts['U']}, type changed {counts['T']}"
    )
