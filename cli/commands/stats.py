from __future__ import annotations

import click
from cleancut.store.views import repository_stats

from ..context import Common, common_options
from ..progress import format_bytes


@click.command("stats")
@common_options
def command(common: Common) -> None:
    """Sizes, deduplication and compression of the whole repository."""
    repo = common.open()
    try:
        stats = repository_stats(repo)
    finally:
        repo.close()
    if common.json:
        common.emit(stats)
        return
    click.echo(f"snapshots:          {stats['snapshots']}")
    click.echo(f"logical size:       {format_bytes(int(stats['logical_bytes']))}")  # type: ignore[arg-type]
    click.echo(f"unique data:        {format_bytes(int(stats['unique_bytes']))}")  # type: ignore[arg-type]
    click.echo(f"stored size:        {format_bytes(int(stats['stored_bytes']))}")  # type: ignore[arg-type]
    click.echo(f"dedup ratio:        {stats['dedup_ratio']}")
    click.echo(f"compression ratio:  {stats['compression_ratio']}")
    click.echo(f"overall ratio:      {stats['total_ratio']}")
    click.echo(f"blobs / packs:      {stats['blobs']} / {stats['packs']}")
