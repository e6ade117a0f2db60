from __future__ import annotations

import sys
import threading
from dataclasses import replace
from pathlib import Path

import click
from cleancut.store.backup import BackupOptions, Progress, estimate
from cleancut.store.errors import ExitCode, UsageError
from cleancut.store.profiles import get_profile
from cleancut.store.runner import run_backup
from cleancut.store.settings import ConfigFile, effective, parse_assignments

from ..context import Common, common_options
from ..progress import format_bytes, progress_line


@click.command("backup")
@click.argument("source")
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
@click.option("--profile", help="Profile for this run (default: config file, then repository).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one profile setting for this run, e.g. --set max_full_age=6h.",
)
@common_options
def command(
    common: Common,
    source: str,
    tags: tuple[str, ...],
    excludes: tuple[str, ...],
    name: str | None,
    force_full: bool,
    profile: str | None,
    assignments: tuple[str, ...],
) -> None:
    """Snapshot one directory: SOURCE is a path, or the name of a source in the config file.

    The policy decides a full or an incremental (see --full and the profile).
    """
    configured = common.config.sources.get(source)
    path = configured.path if configured else Path(source).absolute()
    if configured:
        name = name or configured.name
        excludes = (*configured.exclude, *excludes)
        tags = (*configured.tags, *tags)
    repo = common.open()
    try:
        progress = Progress()
        if common.show_progress:
            threading.Thread(
                target=estimate, args=(path, list(excludes), progress), daemon=True
            ).start()
        overrides = parse_assignments(assignments)
        settings = effective(
            _with_profile(common.config, profile, configured.name if configured else None),
            configured.name if configured else None,
            repo.config.profile,
            overrides,
        ).profile
        options = BackupOptions(
            name=name or str(path),
            tags=list(tags),
            excludes=list(excludes),
            force_full=force_full,
            max_full_age=settings.max_full_age,
        )

        def sample() -> tuple[int, int, int, int]:
            p = progress
            return p.files_done, p.bytes_done, p.files_total, p.bytes_total

        with progress_line(common.show_progress, sample):
            result = run_backup(repo, path, options, progress)
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


def _with_profile(config: ConfigFile, profile: str | None, source: str | None) -> ConfigFile:
    """--profile for this run: it replaces the profile the file or the source names, and
    the file's and the source's overrides still apply on top, as with any profile."""
    if profile is None:
        return config
    try:
        get_profile(profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sources = dict(config.sources)
    if source is not None and source in sources:
        sources[source] = replace(sources[source], profile=profile)
    return replace(config, profile=profile, sources=sources)
