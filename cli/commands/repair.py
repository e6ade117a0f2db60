from __future__ import annotations

import sys

import click
from cleancut.store.errors import ExitCode
from cleancut.store.prune import HeldLock

from ..context import Common, common_options


@click.group("repair")
def command() -> None:
    """Repair the index (rebuilds the local cache; may write a new index segment)."""


@command.command("index")
@common_options
def repair_index(common: Common) -> None:
    """Rebuild the local SQLite index from the repository.

    Index segments are read again; packs that no readable segment covers are
    indexed from their own headers into a new segment, and damaged segments
    are removed.
    """
    repo = common.open()
    try:
        # Never beside a prune: both rewrite index segments.
        lock = HeldLock.acquire(repo.backend, "repair index")
        try:
            result = repo.reindex_from_packs()
        finally:
            lock.release()
        counts = repo.cache.counts()
    finally:
        repo.close()
    for warning in repo.warnings:
        click.echo(f"warning: {warning}", err=True)
    if common.json:
        common.emit({**result, **counts})
    else:
        common.say(
            f"index rebuilt: {counts['blobs']} blobs in {counts['packs']} packs; "
            f"{result['packs_reindexed']} packs indexed from their headers, "
            f"{result['damaged_segments_removed']} damaged segments removed"
        )
    if result["unreadable_packs"]:
        click.echo(
            f"cleancut: {result['unreadable_packs']} damaged pack(s) could not be indexed; "
            "run 'cleancut check --read-data' to see which snapshots depend on them",
            err=True,
        )
        sys.exit(ExitCode.INTEGRITY)
