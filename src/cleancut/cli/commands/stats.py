"""`cleancut stats`: sizes, deduplication and compression of the whole repository."""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes
from cleancut.repository.views import repository_stats


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
    click.echo(f"logical size:       {format_bytes(_int(stats['logical_bytes']))}")
    click.echo(f"unique data:        {format_bytes(_int(stats['unique_bytes']))}")
    click.echo(f"stored size:        {format_bytes(_int(stats['stored_bytes']))}")
    click.echo(f"dedup ratio:        {stats['dedup_ratio']}")
    click.echo(f"compression ratio:  {stats['compression_ratio']}")
    click.echo(f"overall ratio:      {stats['total_ratio']}")
    click.echo(f"blobs / packs:      {stats['blobs']} / {stats['packs']}")


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected a byte count, got {value!r}")
    return value
