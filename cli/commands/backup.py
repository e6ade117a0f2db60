from __future__ import annotations

import sys
import threading
from pathlib import Path

import click
from cleancut.store.backup import Archiver, BackupOptions, Progress, estimate
from cleancut.store.errors import ExitCode
from cleancut.store.profiles import get_profile

from ..context import Common, common_options
from ..progress import format_bytes, progress_line


@click.command("backup")
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help="Skip matching paths (repeatable); a pattern with '/' matches the relative path.",
)
@click.option("--name", help="The source's name in the catalog (default: its absolute path).")
@click.option("--full", "force_full", is_flag=True, help="Start a new chain with a full snapshot.")
@click.option("--profile", help="Profile for this run (default: the repository's).")
@common_options
def command(
    common: Common,
    source: Path,
    tags: tuple[str, ...],
    excludes: tuple[str, ...],
    name: str | None,
    force_full: bool,
    profile: str | None,
) -> None:
    """Snapshot one directory."""
    source = source.absolute()
    repo = common.open()
    try:
        progress = Progress()
        if common.show_progress:
            threading.Thread(
                target=estimate, args=(source, list(excludes), progress), daemon=True
            ).start()
        settings = get_profile(profile or repo.config.profile)
        options = BackupOptions(
            name=name or str(source),
            tags=list(tags),
            excludes=list(excludes),
            force_full=force_full,
            max_full_age=settings.max_full_age,
        )
        archiver = Archiver(repo, source, options, progress)

        def sample() -> tuple[int, int, int, int]:
            p = progress
            return p.files_done, p.bytes_done, p.files_total, p.bytes_total

        with progress_line(common.show_progress, sample):
            result = archiver.run()
    finally:
        repo.close()
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if common.json:
        common.emit(result.summary())
    else:
        common.say(
            f"{result.snapshot.kind} snapshot {result.snapshot.id[:12]} saved "
            f"(seq {result.snapshot.seq}: {result.snapshot.reason}): "
            f"{result.files} files, {result.dirs} dirs, "
            f"{format_bytes(result.bytes_read)} read, {format_bytes(result.bytes_added)} added "
            f"in {result.duration_s:.1f}s"
        )
    if result.warnings:
        sys.exit(ExitCode.WARNINGS)
