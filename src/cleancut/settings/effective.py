"""The effective settings of a source: seven layers stacked, each value with its origin.

Settings stack in seven layers; when a value surprises the operator, the layer
it came from is what they need to know, so every effective value carries its
origin. Precedence, lowest to highest: the built-in default profile < the
repository's profile (chosen at init) < the config file's `profile` < the
source's `profile` < the config file's [overrides] < the source's overrides
< command-line overrides. The file itself is read and checked in config_file.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cleancut.errors import UsageError

from .profiles import DEFAULT_PROFILE, Profile, get_profile, parse_value

if TYPE_CHECKING:
    from .config_file import ConfigFile, Overrides, SourceConfig

COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Effective:
    """The settings a source runs with, and for each field the layer that set it."""

    profile: Profile
    origin: dict[str, str]
    profile_name: str
    profile_origin: str
    source: SourceConfig | None = None


@dataclass(frozen=True)
class Located:
    """A value found in the first layer that sets it (e.g. the repository location)."""

    value: str | None
    origin: str


def effective(
    config: ConfigFile,
    source: str | None,
    repo_profile: str | None,
    cli_overrides: dict[str, str],
) -> Effective:
    """Stack the seven layers for `source` (None: settings shared by every source)."""
    src = config.source(source) if source is not None else None
    profile_name, profile_origin = _choose_profile(config, src, repo_profile)
    values: dict[str, Any] = asdict(get_profile(profile_name))
    origin = dict.fromkeys(values, profile_origin)
    layers = [(config.overrides, "config file [overrides]")]
    if src is not None:
        layers.append((src.overrides, f"source {src.name} overrides"))
    layers.append((parse_cli_overrides(cli_overrides), COMMAND_LINE))
    for overrides, label in layers:
        for name, value in overrides.items():
            values[name] = value
            origin[name] = label
    return Effective(Profile(**values), origin, profile_name, profile_origin, src)


def _choose_profile(
    config: ConfigFile, src: SourceConfig | None, repo_profile: str | None
) -> tuple[str, str]:
    """The profile of the highest layer that names one, and that layer's label."""
    if repo_profile is not None:
        try:
            get_profile(repo_profile)
        except ValueError as exc:
            raise UsageError(f"repository profile: {exc}") from None
    candidates = [
        (src.profile if src else None, f"source {src.name}" if src else ""),
        (config.profile, "config file"),
        (repo_profile, "repository"),
    ]
    for name, label in candidates:
        if name is not None:
            return name, f"profile {name} ({label})"
    return DEFAULT_PROFILE, f"profile {DEFAULT_PROFILE} (default)"


def parse_cli_overrides(raw: dict[str, str]) -> Overrides:
    """Command-line KEY=VALUE settings, checked like the file's (errors name the key)."""
    parsed: Overrides = {}
    for name, text in raw.items():
        try:
            parsed[name] = parse_value(name, text)
        except ValueError as exc:
            raise UsageError(f"{COMMAND_LINE}: {name}={text}: {exc}") from None
    return parsed


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """["max_full_age=6h", ...] as a dict; the last of repeated keys wins, as on a shell line."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{COMMAND_LINE}: {item!r} is not KEY=VALUE (e.g. max_full_age=6h)")
        result[name.strip()] = value.strip()
    return result


def first_set(*candidates: tuple[str | None, str]) -> Located:
    """The first (value, origin) pair with a value: --repo, then CLEANCUT_REPO, then the file."""
    for value, origin in candidates:
        if value:
            return Located(value, origin)
    return Located(None, "not set")
