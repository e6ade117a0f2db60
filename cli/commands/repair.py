from __future__ import annotations

import click

from ..context import Common, common_options


@click.group("repair")
def command() -> None:
    """Repair local state."""


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
        result = repo.reindex_from_packs()
        counts = repo.cache.counts()
    finally:
        repo.close()
    if common.json:
        common.emit({**result, **counts})
    else:
        common.say(
            f"index rebuilt: {counts['blobs']} blobs in {counts['packs']} packs; "
            f"{result['packs_reindexed']} packs indexed from their headers, "
            f"{result['damaged_segments_removed']} damaged segments removed"
        )
