from __future__ import annotations

import sys
from pathlib import Path

import click
from cleancut.store.errors import ExitCode
from cleancut.store.restore import Restorer

from ..context import Common, common_options
from ..progress import format_bytes, progress_line


@click.command("restore")
@click.argument("snapshot")
@click.option(
    "--target",
    "-t",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to restore into (created if missing).",
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Restore only this path of the snapshot (repeatable).",
)
@click.option("--name", help="With 'latest': the latest snapshot of this source.")
@common_options
def command(
    common: Common, snapshot: str, target: Path, includes: tuple[str, ...], name: str | None
) -> None:
    """Restore SNAPSHOT (an id, an id prefix, or 'latest') into --target."""
    repo = common.open()
    try:
        snap = repo.find_snapshot(snapshot, name)
        total = int(snap.summary.get("bytes_total", 0))
        done = [0]

        def on_bytes(n: int) -> None:
            done[0] += n

        restorer = Restorer(repo, snap, target, list(includes), on_bytes)
        with progress_line(
            common.show_progress, lambda: (restorer.result.files, done[0], 0, total)
        ):
            result = restorer.run()
    finally:
        repo.close()
    for line in result.refused:
        click.echo(f"refused: {line}", err=True)
    for line in result.damaged:
        click.echo(f"damaged: {line}", err=True)
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
    if common.json:
        common.emit(
            {
                "snapshot_id": snap.id,
                "target": str(target),
                "files": result.files,
                "dirs": result.dirs,
                "symlinks": result.symlinks,
                "bytes_written": result.bytes_written,
                "refused": result.refused,
                "damaged": result.damaged,
                "errors": result.errors,
            }
        )
    else:
        common.say(
            f"restored snapshot {snap.id[:12]} to {target}: {result.files} files, "
            f"{format_bytes(result.bytes_written)}"
        )
    if result.damaged:
        click.echo(
            f"cleancut: {len(result.damaged)} file(s) not restored because their data is "
            "damaged; run 'cleancut check --read-data'",
            err=True,
        )
        sys.exit(ExitCode.INTEGRITY)
    if result.refused:
        click.echo(
            f"cleancut: refused {len(result.refused)} unsafe entr"
            f"{'y' if len(result.refused) == 1 else 'ies'}; nothing was written outside "
            f"{target}",
            err=True,
        )
        sys.exit(ExitCode.UNSAFE_ENTRY)
    if result.errors:
        click.echo(
            f"cleancut: {len(result.errors)} file(s) could not be written into {target}",
            err=True,
        )
        sys.exit(ExitCode.FATAL)
