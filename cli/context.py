"""Options every command shares, and opening the repository they name."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from cleancut.store.errors import UsageError
from cleancut.store.location import backend_for
from cleancut.store.repository import Repository, read_config
from cleancut.store.settings import ConfigFile, load_config

from .passphrase import read_passphrase

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

    @functools.cached_property
    def config(self) -> ConfigFile:
        """The config file (--config, CLEANCUT_CONFIG, or ./cleancut.toml), read once."""
        return load_config(self.config_path)

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
        backend = backend_for(self.location)
        cache_root = Path(self.cache_dir) if self.cache_dir else None
        if self.config_path is not None:
            _ = self.config  # a --config that names no readable file is an error, always
        read_config(backend)  # "not a repository" before asking for a passphrase
        repo = Repository.open(backend, self.passphrase(), cache_root)
        for warning in repo.warnings:
            click.echo(f"warning: {warning}", err=True)
        return repo

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
        **kwargs: Any,
    ) -> Any:
        common = Common(
            repo, password_file, password_command, as_json, quiet, cache_dir, config_path
        )
        return func(common, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
