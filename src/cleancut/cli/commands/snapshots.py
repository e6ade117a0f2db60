"""`cleancut snapshots`: list the snapshots, optionally of one source or with tags."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from cleancut.cli.cells import cell
from cleancut.cli.context import Common, common_options


@click.command("snapshots")
@click.option("--name", help="Only snapshots of this source.")
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag.")
@common_options
def command(common: Common, name: str | None, tags: tuple[str, ...]) -> None:
    """List snapshots."""
    repo = common.open()
    try:
        snaps = [
            s
            for s in repo.snapshots()
            if (name is None or s.name == name) and set(tags) <= set(s.tags)
        ]
    finally:
        repo.close()
    if common.json:
        common.emit(
            [
                {
                    "id": s.id,
                    "time": s.time,
                    "name": s.name,
                    "host": s.host,
                    "user": s.user,
                    "tags": s.tags,
                    "paths": s.paths,
                    "kind": s.kind,
                    "parent": s.parent,
                    "chain": s.chain,
                    "seq": s.seq,
                    "consistency": s.consistency,
                    "tree": s.tree,
                    "summary": s.summary,
                    "copied_from": s.copied_from,
                    "clock_went_back": s.clock_went_back,
                    "clock_reading": s.clock_reading,
                }
                for s in snaps
            ]
        )
        return
    table = Table(box=None)
    for col in ("id", "time", "name", "host", "kind", "consistency", "tags", "files", "size"):
        table.add_column(col)
    for s in snaps:
        table.add_row(
            s.id[:12],
            s.time[:19].replace("T", " ") + (" (clock went back)" if s.clock_went_back else ""),
            cell(s.name),
            cell(s.host),
            s.kind,
            cell(s.consistency),
            cell(",".join(s.tags)),
            str(s.summary.get("files", "")),
            str(s.summary.get("bytes_total", "")),
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: never cut ids or names
    console.print(table)
    click.echo(f"{len(snaps)} snapshots")
