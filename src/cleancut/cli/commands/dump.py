"""`cleancut dump`: one file of a snapshot to stdout, or a directory as a tar stream
(browse/dump.py). A path not in the snapshot is exit 21; entries that cannot be tar
names are left out and named (exit 5)."""

from __future__ import annotations

import sys

import click

from cleancut.browse.dump import DumpOutcome, dump_path
from cleancut.cli.context import Common, common_options
from cleancut.pathtext import shown_path


@click.command("dump")
@click.argument("snapshot")
@click.argument("path")
@click.option("--name", help="With 'latest': the source.")
@common_options
def command(common: Common, snapshot: str, path: str, name: str | None) -> DumpOutcome:
    """Write PATH of SNAPSHOT to stdout: a file as its bytes, a directory ('/' for the
    whole snapshot) or a symlink as a tar stream (modes, owners, times, symlinks kept).

    cleancut dump latest workspace/SOUL.md > SOUL.md;
    cleancut dump latest workspace | tar -x -C /tmp/back
    """
    repo = common.open()
    try:
        snap = repo.find_snapshot(snapshot, name)
        outcome = dump_path(repo, snap, path, sys.stdout.buffer)
    finally:
        repo.close()
    for line in outcome.refused:
        click.echo(f"refused: {shown_path(line)}", err=True)
    if outcome.refused:
        click.echo(
            f"cleancut: left {len(outcome.refused)} unsafe entr"
            f"{'y' if len(outcome.refused) == 1 else 'ies'} out of the tar stream",
            err=True,
        )
    return outcome
