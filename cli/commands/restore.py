from __future__ import annotations

import sys
from pathlib import Path

import click
from cleancut.agent.inflight import inflight_of, write_inflight
from cleancut.store.clock import parse_time
from cleancut.store.errors import ExitCode
from cleancut.store.restore import Restorer
from cleancut.store.snapshot import snapshot_at

from ..context import Common, common_options
from ..progress import format_bytes, progress_line


@click.command("restore")
@click.argument("snapshot", required=False)
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
@click.option("--name", help="With 'latest' or --at: the snapshot of this source.")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="The newest snapshot at or before TIME (ISO 8601, or like '2h ago').",
)
@common_options
def command(
    common: Common,
    snapshot: str | None,
    target: Path,
    includes: tuple[str, ...],
    name: str | None,
    at: str | None,
) -> None:
    """Restore SNAPSHOT (an id, an id prefix, or 'latest') into --target.

    An incremental is restored by replaying its chain from the full, after every
    link of the chain has been verified.
    """
    if (snapshot is None) == (at is None):
        raise click.UsageError("give either SNAPSHOT or --at TIME")
    repo = common.open()
    try:
        if at is not None:
            snap = repo.load_snapshot(snapshot_at(repo.snapshots(), parse_time(at), name).id)
        else:
            snap = repo.find_snapshot(snapshot or "latest", name)
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
    inflight = inflight_of(snap)
    inflight_file = write_inflight(snap, target)
    for action in inflight:
        click.echo(
            f"in flight at capture: {action.get('key')} ({action.get('kind')}, "
            f"{action.get('state')}); reconcile by key, do not repeat",
            err=True,
        )
    if inflight_file is not None:
        click.echo(f"in-flight actions written to {inflight_file}", err=True)
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
                "inflight": inflight,
                "inflight_file": str(inflight_file) if inflight_file else None,
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
