from __future__ import annotations

import click

from ..context import Common, common_options


@click.group("repair")
def command() -> None:
    """Repair local state."""


@command.command("index")
@common_options
def repair_index(common: Common) -> None:
    """Rebuild the local SQLite index from the repository's index segments."""
    repo = common.open()
    try:
        result = repo.rebuild_cache()
        counts = repo.cache.counts()
    finally:
        repo.close()
    if common.json:
        common.emit({**result, **counts})
    else:
        common.say(
            f"index rebuilt: {result['segments_loaded']} segments, {counts['blobs']} blobs "
            f"in {counts['packs']} packs"
        )
