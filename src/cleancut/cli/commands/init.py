"""`cleancut init`: create a repository (chunk and pack sizes, compression, key cost).

The passphrase is asked for twice (or read from its file, command or environment);
the sizes are validated before anything is written.
"""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.sizes import parse_size
from cleancut.errors import UsageError
from cleancut.repository.compress import NEW_REPOSITORY_LEVEL
from cleancut.repository.config import ChunkerParams
from cleancut.repository.keys import KdfParams
from cleancut.repository.repository import init_repository
from cleancut.settings.profiles import DEFAULT_PROFILE, PROFILES


@click.command("init")
@click.option("--chunk-min", default="256KiB", show_default=True, help="Smallest chunk.")
@click.option("--chunk-avg", default="1MiB", show_default=True, help="Average chunk.")
@click.option("--chunk-max", default="4MiB", show_default=True, help="Largest chunk.")
@click.option("--pack-size", default="16MiB", show_default=True, help="Target size of pack files.")
@click.option(
    "--compression-level",
    type=click.IntRange(0, 19),
    default=NEW_REPOSITORY_LEVEL,
    show_default=True,
    help="zstd level for new blobs (0: store raw).",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=DEFAULT_PROFILE,
    show_default=True,
    help="Default backup profile of the repository's sources.",
)
@click.option("--kdf-memory", default="64MiB", show_default=True, help="Argon2id memory cost.")
@click.option("--kdf-iterations", default=3, show_default=True, help="Argon2id passes.")
@common_options
def command(
    common: Common,
    chunk_min: str,
    chunk_avg: str,
    chunk_max: str,
    pack_size: str,
    compression_level: int,
    profile: str,
    kdf_memory: str,
    kdf_iterations: int,
) -> None:
    """Create a repository."""
    chunker = ChunkerParams(parse_size(chunk_min), parse_size(chunk_avg), parse_size(chunk_max))
    try:
        chunker.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    kdf = KdfParams(memory_kib=parse_size(kdf_memory) // 1024, iterations=kdf_iterations)
    try:
        kdf.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    backend = common.backend(common.location)
    config = init_repository(
        backend,
        common.passphrase(confirm=True),
        chunker,
        kdf,
        parse_size(pack_size),
        compression_level,
        profile,
    )
    if common.json:
        common.emit(
            {"id": config.id, "location": backend.location, "chunker": vars(config.chunker)}
        )
    else:
        common.say(f"created repository {config.id[:12]} at {backend.location}")
        common.say("keep the passphrase safe: without it the data cannot be recovered")
