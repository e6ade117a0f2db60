"""Options every command shares, and opening the repository they name."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cleancut.backend.access import open_backend
from cleancut.backend.base import Backend
from cleancut.errors import UsageError
from cleancut.settings.caps import capped
from cleancut.settings.config_file import ConfigFile, load_config
from cleancut.settings.profiles import parse_bandwidth

from .metrics_textfile import metrics_textfile_after
from .passphrase import read_passphrase
from .presets import PRESETS

if TYPE_CHECKING:
    from cleancut.repository.repository import Repository

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Common:
    repo: str | None
    password_file: str | None
    password_command: str | None
    json: bool
    quiet: bool
    cache_dir: str | None
    config_path: Path | None = None
    limit_upload: str | None = None
    limit_download: str | None = None
    append_only: bool = False

    @functools.cached_property
    def config(self) -> ConfigFile:
        """The config file (--config, CLEANCUT_CONFIG, or ./cleancut.toml), read once."""
        return load_config(self.config_path, PRESETS)

    @property
    def location(self) -> str:
        location = self.repo or self.config.repository
        if not location:
            raise UsageError(
                "no repository: pass --repo, set CLEANCUT_REPO, or name one in the config file"
            )
        return location

    def passphrase(self, confirm: bool = False) -> str:
        password_file = self.password_file
        if not password_file and not self.password_command:
            password_file = self.config.password_file
        return read_passphrase(password_file, self.password_command, confirm)

    def open(self) -> Repository:
        # Imported here: the repository brings its cache and SQLAlchemy with it, which a
        # command that opens no repository (`config show`) does not load.
        from cleancut.repository.repository import Repository, read_config

        upload, download, plain = self._plain_backend(self.location)
        cache_root = Path(self.cache_dir) if self.cache_dir else None
        if self.config_path is not None:
            _ = self.config  # a --config that names no readable file is an error, always
        config = read_config(plain)  # "not a repository" before asking for a passphrase
        backend = capped(
            plain, self.config, upload, download, self.limit_upload is not None, config
        )
        repo = Repository.open(backend, self.passphrase(), cache_root, config=config)
        for warning in repo.warnings:
            click.echo(f"warning: {warning}", err=True)
        metrics_textfile_after(repo, self.config)
        return repo

    def backend(self, location: str) -> Backend:
        """The location's backend with this run's caps and append-only choice.

        An explicit --limit-upload applies to any backend; without one, the profile's
        bandwidth cap applies to remote repositories only (a local disk is not a link
        shared with the agent)."""
        upload, download, plain = self._plain_backend(location)
        return capped(plain, self.config, upload, download, self.limit_upload is not None)

    def _plain_backend(self, location: str) -> tuple[float | None, float | None, Backend]:
        """The caps the options give, and the location's backend (append-only if chosen)."""
        upload = _mbit("--limit-upload", self.limit_upload)
        download = _mbit("--limit-download", self.limit_download)
        append_only = self.append_only or self.config.append_only
        return upload, download, open_backend(location, append_only=append_only)

    @property
    def show_progress(self) -> bool:
        return not self.quiet and not self.json and sys.stderr.isatty()

    def emit(self, value: Any) -> None:
        """Machine-readable output: one JSON document on stdout."""
        click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))

    def say(self, message: str) -> None:
        if not self.quiet:
            click.echo(message)


def common_options(func: F) -> F:
    """--repo, passphrase sources, --json, --quiet, --cache-dir on every command."""

    @click.option(
        "--repo", "-r", envvar="CLEANCUT_REPO", help="Repository location (or CLEANCUT_REPO)."
    )
    @click.option(
        "--password-file",
        envvar="CLEANCUT_PASSWORD_FILE",
        type=click.Path(dir_okay=False),
        help="Read the passphrase from this file.",
    )
    @click.option(
        "--password-command",
        envvar="CLEANCUT_PASSWORD_COMMAND",
        help="Run this command and read the passphrase from its output.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress and no chatter.")
    @click.option(
        "--cache-dir", envvar="CLEANCUT_CACHE_DIR", help="Where the local index cache lives."
    )
    @click.option(
        "--config",
        "config_path",
        envvar="CLEANCUT_CONFIG",
        type=click.Path(path_type=Path),
        help="Config file (or CLEANCUT_CONFIG; default ./cleancut.toml if it exists).",
    )
    @click.option(
        "--limit-upload",
        envvar="CLEANCUT_LIMIT_UPLOAD",
        metavar="MBIT",
        help="Cap uploads, in Mbit/s (default: the profile's cap, for remote repositories).",
    )
    @click.option(
        "--limit-download",
        envvar="CLEANCUT_LIMIT_DOWNLOAD",
        metavar="MBIT",
        help="Cap downloads, in Mbit/s (default: none).",
    )
    @click.option(
        "--append-only",
        is_flag=True,
        envvar="CLEANCUT_APPEND_ONLY",
        help="Never delete or overwrite an object (agent hosts; prune from a trusted host).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        repo: str | None,
        password_file: str | None,
        password_command: str | None,
        as_json: bool,
        quiet: bool,
        cache_dir: str | None,
        config_path: Path | None,
        limit_upload: str | None,
        limit_download: str | None,
        append_only: bool,
        **kwargs: Any,
    ) -> Any:
        common = Common(
            repo,
            password_file,
            password_command,
            as_json,
            quiet,
            cache_dir,
            config_path,
            limit_upload,
            limit_download,
            append_only,
        )
        return func(common, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _mbit(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_bandwidth(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
