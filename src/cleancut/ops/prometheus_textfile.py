"""The node_exporter textfile collector's file, written whole or not at all.

For hosts that run `tick` from cron or a systemd timer, with no daemon to scrape:
node_exporter's `--collector.textfile.directory` reads every `*.prom` file there at
each scrape. prometheus_client's write_to_textfile renames a temporary file over the
target but never fsyncs it; here the text goes to a hidden temporary name in the same
directory (`.cc-tmp-…`, which the collector ignores: it does not end in `.prom`), is
fsynced, renamed over the target and the directory fsynced. A reader sees the old file
or the new one, never part of one, and after a crash the file is one of the two.
"""

from __future__ import annotations

from pathlib import Path

from cleancut.errors import CleancutError
from cleancut.fsio.safeio import replace_file
from cleancut.repository.cache import Cache
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile

from .prometheus import exposition

TEXTFILE_MODE = 0o644  # node_exporter runs as its own user; the figures are not secrets


class TextfileError(CleancutError):
    """The metrics textfile could not be written (exit 1)."""


def check_textfile_name(path: Path) -> None:
    """node_exporter ignores any other name: writing one would only look like success."""
    if path.suffix != ".prom":
        raise TextfileError(f"metrics textfile {path}: node_exporter reads only *.prom files")


def write_textfile(path: Path, repo: Repository, config: ConfigFile) -> None:
    """Write the repository's metrics to `path` atomically."""
    check_textfile_name(path)
    data = exposition(repo, config)
    try:
        replace_file(path, data, mode=TEXTFILE_MODE)
    except OSError as exc:
        raise TextfileError(
            f"cannot write metrics textfile {path}: {exc.strerror or exc}"
        ) from None


def write_textfile_after(path: Path, repo: Repository, config: ConfigFile) -> None:
    """Write the textfile for a repository its command has already closed: the same
    backend and keys (no passphrase asked again), a fresh look at the cache."""
    fresh = Repository(repo.backend, repo.config, repo.keys, Cache(repo.config.id, repo.cache_root))
    try:
        fresh.sync_cache()
        write_textfile(path, fresh, config)
    finally:
        fresh.close()
