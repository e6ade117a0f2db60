"""The config file (cleancut.toml): finding it, reading it, checking every key.

A schedule should not need long command lines, so the repository, the
sources and their settings live in one TOML file. Every mistake in the file
is a UsageError of one line naming the file and the key, found when the file
is loaded rather than hours later in a backup. How its settings stack with
the profiles and the command line into the values a source runs with is
settings/effective.py.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut.errors import UsageError
from cleancut.fsio.boundedread import CONFIG_LIMIT, read_bounded
from cleancut.redact import has_userinfo, redact_userinfo
from cleancut.repository.sourcedirs import Dirs, Source, SourceDir, make_dirs
from cleancut.validation.rules import DEFAULT_RULES, Rules

# Re-exported for the command line (cli/context.py; cli/commands/backup.py, config.py and
# status.py) until it imports them from settings/effective.py.
from .effective import Effective as Effective
from .effective import Located as Located
from .effective import effective as effective
from .effective import first_set as first_set
from .effective import parse_assignments as parse_assignments
from .profiles import check_count, get_profile, parse_value
from .units import check_duration, parse_duration

CONFIG_ENV = "CLEANCUT_CONFIG"
DEFAULT_CONFIG_NAME = "cleancut.toml"

_TOP_KEYS = (
    "repository",
    "password_file",
    "profile",
    "overrides",
    "sources",
    "retention",
    "prune_interval",
    "prune_safety_margin",
    "replication",
    "append_only",
    "alert_command",
    "metrics_textfile",
)
_REPLICATION_KEYS = ("to", "interval", "password_file")
DEFAULT_REPLICATION_INTERVAL = 3600.0
_SOURCE_KEYS = (
    "path",
    "paths",
    "preset",
    "profile",
    "exclude",
    "tags",
    "overrides",
    "retention",
    "agent",
    "fallback",
    "pre",
    "post",
    "staging",
    "journal",
    "validate",
)

Overrides = dict[str, float | None]
# Keep rules for `forget`, as in [retention]: keep_last, keep_hourly, keep_daily, keep_weekly,
# keep_monthly (counts) and keep_within (seconds).
Retention = dict[str, float]
RETENTION_COUNTS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")
RETENTION_KEYS = (*RETENTION_COUNTS, "keep_within")


@dataclass(frozen=True)
class SourceConfig:
    """One [sources.NAME] table; paths already resolved against the file's directory."""

    name: str
    path: Path | None = None  # one directory; else `dirs`
    profile: str | None = None
    exclude: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    overrides: Overrides = field(default_factory=dict)
    retention: Retention = field(default_factory=dict)
    # Hot backup: the agent's control socket (unix:PATH), what to do on a quiesce miss,
    # hooks for agents without the protocol, and where the capture is staged.
    agent: str | None = None
    fallback: str | None = None
    pre: str | None = None
    post: str | None = None
    staging: Path | None = None
    # Journal mode: the agent's local journal directory, shipped by tick at the
    # profile's incremental sync interval (and the `journal` fallback's source).
    journal: Path | None = None
    # Which files a capture check and a restore test check, and as what (validaterules.py).
    validate: Rules = DEFAULT_RULES
    # Several named directories in one cut (`paths = {NAME = PATH, ...}`, or a preset).
    dirs: Dirs = ()
    # A preset's name and what it resolved, each value with where it came from (config show).
    preset: str | None = None
    resolved: tuple[tuple[str, str, str], ...] = ()  # (what, value, origin)

    @property
    def source(self) -> Source:
        """What a backup of this source reads: its directory, or its named directories."""
        if self.dirs:
            return self.dirs
        assert self.path is not None  # parsing guarantees one or the other
        return self.path


# A preset a source may name (`preset = "openclaw"`) turns its own keys into a plain
# source table: it gets the source's table and the config file's directory and returns the
# table with `path`/`paths`, `agent` and `exclude` filled in, and what it resolved
# (key, value, where from). The store knows no agent: the caller that may know one (the
# CLI, cli/presets.py) hands the presets in; parsing without them knows none.
Preset = Callable[[dict[str, Any], Path], tuple[dict[str, Any], list[tuple[str, str, str]]]]
NO_PRESETS: Mapping[str, Preset] = {}


@dataclass(frozen=True)
class Replication:
    """[replication]: the repository `tick` copies every snapshot to, and how often.

    One table for the whole file, not one per source: a replica is a copy of the
    repository, and a chain must arrive whole whatever source it belongs to.
    """

    to: str  # a location, as --repo takes it (local paths resolved against the file)
    interval: float = DEFAULT_REPLICATION_INTERVAL
    password_file: str | None = None  # the replica's passphrase; default: the source's


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file; path None means there is none (every field empty)."""

    path: Path | None = None
    repository: str | None = None
    password_file: str | None = None
    profile: str | None = None
    overrides: Overrides = field(default_factory=dict)
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    retention: Retention = field(default_factory=dict)  # [retention]: every source's default
    prune_interval: float | None = None  # how often `tick` prunes; None: never
    prune_safety_margin: float | None = None
    replication: Replication | None = None  # [replication]; None: tick copies nothing
    append_only: bool = False  # open the repository append-only (agent hosts)
    alert_command: str | None = None  # run after 3 consecutive quiesce misses of a source
    metrics_textfile: Path | None = None  # node_exporter textfile every command rewrites

    def retention_for(self, source: str) -> Retention:
        """A source's keep rules: its own [sources.NAME.retention], else the file's."""
        src = self.sources.get(source)
        return dict(src.retention) if src and src.retention else dict(self.retention)

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "no config file"

    def source(self, name: str) -> SourceConfig:
        """The source `name`; UsageError saying what is missing if the file has none."""
        if self.path is None:
            raise UsageError(
                f"no source {name!r}: no config file "
                f"(pass --config, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG_NAME})"
            )
        try:
            return self.sources[name]
        except KeyError:
            known = ", ".join(self.sources) or "none"
            raise UsageError(f"{self.path}: no source {name!r} (sources: {known})") from None


# --- finding and reading the file ------------------------------------------


def find_config(path: Path | None) -> Path | None:
    """The file to read: the given path, else CLEANCUT_CONFIG, else ./cleancut.toml if present.

    A path that was asked for explicitly must exist; only the implicit
    ./cleancut.toml may be absent, so a typo in --config is never ignored.
    """
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_config(path: Path | None, presets: Mapping[str, Preset] = NO_PRESETS) -> ConfigFile:
    """The config at `path` (or found as find_config says); an empty ConfigFile if none.
    `presets`: the source presets a source may name."""
    found = find_config(path)
    if found is None:
        return ConfigFile()
    # Absolute, so the paths in it stay right whatever directory a later step runs in,
    # and `config show` names exactly which file was read.
    found = found.absolute()
    return parse_config(_read_toml(found), found, presets)


def _read_toml(path: Path) -> dict[str, Any]:
    data = read_bounded(path, "config file", CONFIG_LIMIT)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise UsageError(f"{path}: not valid TOML: {detail}") from None
    except RecursionError:  # tables or arrays nested deeper than the parser recurses
        raise UsageError(f"{path}: not valid TOML: nested too deeply") from None


# --- parsing ---------------------------------------------------------------


def parse_config(
    raw: dict[str, Any], path: Path, presets: Mapping[str, Preset] = NO_PRESETS
) -> ConfigFile:
    """Check and convert a decoded TOML document; relative paths are taken from its directory.

    Relative to the file, not the working directory, because a scheduler
    (cron, systemd) runs cleancut from wherever it likes.
    """
    where = _Where(path)
    where.no_unknown_keys(raw, _TOP_KEYS)
    base = path.parent
    repository = where.optional_str(raw, "repository")
    password_file = where.optional_str(raw, "password_file")
    sources_raw = where.table(raw, "sources")
    return ConfigFile(
        path=path,
        repository=_resolve_location(where, "repository", repository, base) if repository else None,
        password_file=str(_resolve_path(password_file, base)) if password_file else None,
        profile=where.profile_name(raw, "profile"),
        overrides=where.overrides(where.table(raw, "overrides"), "overrides"),
        sources={
            name: _parse_source(where, name, value, base, presets)
            for name, value in sources_raw.items()
        },
        retention=where.retention(where.table(raw, "retention"), "retention"),
        prune_interval=where.duration(raw, "prune_interval"),
        prune_safety_margin=where.duration(raw, "prune_safety_margin"),
        replication=_parse_replication(where, raw, base),
        append_only=where.flag(raw, "append_only"),
        alert_command=where.optional_str(raw, "alert_command"),
        metrics_textfile=_optional_path(where, raw, "metrics_textfile", "", base),
    )


def _parse_replication(where: _Where, raw: dict[str, Any], base: Path) -> Replication | None:
    if "replication" not in raw:
        return None
    table = where.table(raw, "replication")
    where.no_unknown_keys(table, _REPLICATION_KEYS, "replication")
    to = where.optional_str(table, "to", "replication")
    if to is None:
        raise where.fail("replication", "missing 'to' (the repository to copy to)")
    interval = where.duration(table, "interval", "replication")
    password_file = where.optional_str(table, "password_file", "replication")
    return Replication(
        to=_resolve_location(where, "replication.to", to, base),
        interval=interval if interval is not None else DEFAULT_REPLICATION_INTERVAL,
        password_file=str(_resolve_path(password_file, base)) if password_file else None,
    )


def _parse_source(
    where: _Where, name: str, raw: object, base: Path, presets: Mapping[str, Preset]
) -> SourceConfig:
    prefix = _key("sources", name)
    if not name:
        raise where.fail(prefix, "a source needs a non-empty name")
    if not isinstance(raw, dict):
        raise where.fail(prefix, f"expected a table ([{prefix}]), got {_toml_type(raw)}")
    preset: str | None = None
    resolved: tuple[tuple[str, str, str], ...] = ()
    if "preset" in raw:
        preset = where.optional_str(raw, "preset", prefix)
        raw, resolved = _apply_preset(where, presets, str(preset), raw, prefix, base)
    where.no_unknown_keys(raw, _SOURCE_KEYS, prefix)
    path = where.optional_str(raw, "path", prefix)
    dirs = _source_dirs(where, raw, prefix, base)
    if path is None and not dirs:
        raise where.fail(
            prefix, "missing 'path' (the directory to back up) or 'paths' ({NAME = PATH, ...})"
        )
    if path is not None and dirs:
        raise where.fail(prefix, "give 'path' or 'paths', not both")
    agent = _agent_address(where, raw, prefix, base)
    fallback = _fallback(where, raw, prefix)
    if agent and ("pre" in raw or "post" in raw):
        raise where.fail(prefix, "choose one capture mode: 'agent' or 'pre'/'post', not both")
    if fallback == "journal" and "journal" not in raw:
        raise where.fail(
            _key(prefix, "fallback"), "the journal fallback needs 'journal' (the journal directory)"
        )
    if fallback and fallback != "none" and not agent:
        raise where.fail(
            _key(prefix, "fallback"), "a fallback needs 'agent' (it is what a miss does)"
        )
    return SourceConfig(
        name=name,
        path=_resolve_path(path, base) if path is not None else None,
        dirs=dirs,
        preset=preset,
        resolved=resolved,
        profile=where.profile_name(raw, "profile", prefix),
        exclude=where.str_list(raw, "exclude", prefix),
        tags=where.str_list(raw, "tags", prefix),
        overrides=where.overrides(where.table(raw, "overrides", prefix), _key(prefix, "overrides")),
        retention=where.retention(where.table(raw, "retention", prefix), _key(prefix, "retention")),
        agent=agent,
        fallback=fallback,
        pre=where.optional_str(raw, "pre", prefix),
        post=where.optional_str(raw, "post", prefix),
        staging=_optional_path(where, raw, "staging", prefix, base),
        journal=_optional_path(where, raw, "journal", prefix, base),
        validate=_validate_rules(where, raw, prefix),
    )


def _validate_rules(where: _Where, raw: dict[str, Any], prefix: str) -> Rules:
    table = where.table(raw, "validate", prefix)
    try:
        return Rules.from_mapping(table)
    except ValueError as exc:
        raise where.fail(_key(prefix, "validate"), str(exc)) from None


FALLBACKS = ("none", "frozen", "unquiesced", "journal")


def _source_dirs(where: _Where, raw: dict[str, Any], prefix: str, base: Path) -> Dirs:
    """`paths = {state = "/home/claw/.openclaw", workspace = "/srv/ws"}`: named directories."""
    if "paths" not in raw:
        return ()
    key = _key(prefix, "paths")
    table = raw["paths"]
    if not isinstance(table, dict) or not table:
        raise where.fail(key, "expected a table of NAME = PATH, like {state = \"/srv/claw\"}")
    found = []
    for name, value in table.items():
        if not isinstance(value, str) or not value:
            raise where.fail(_key(key, name), f"expected a path, got {_shown(value)}")
        found.append(SourceDir(name, _resolve_path(value, base)))
    try:
        return make_dirs(found)
    except UsageError as exc:
        raise where.fail(key, str(exc)) from None


def _apply_preset(
    where: _Where,
    presets: Mapping[str, Preset],
    preset: str,
    raw: dict[str, Any],
    prefix: str,
    base: Path,
) -> tuple[dict[str, Any], tuple[tuple[str, str, str], ...]]:
    """The hook: a preset turns its own keys into a plain source table."""
    resolve = presets.get(preset)
    if resolve is None:
        known = ", ".join(presets) or "none"
        raise where.fail(_key(prefix, "preset"), f"unknown preset (known: {known})")
    try:
        table, resolved = resolve(raw, base)
    except UsageError as exc:
        raise where.fail(prefix, f"preset {preset}: {exc}") from None
    return table, tuple(resolved)


def _agent_address(where: _Where, raw: dict[str, Any], prefix: str, base: Path) -> str | None:
    value = where.optional_str(raw, "agent", prefix)
    if value is None:
        return None
    if value.startswith("openclaw://") and len(value) > len("openclaw://"):
        return value  # checked in full when the runtime connects (hot/openclaw.py)
    scheme, sep, path = value.partition(":")
    if not sep or scheme != "unix" or not path:
        raise where.fail(
            _key(prefix, "agent"), f"expected unix:PATH or openclaw://HOST:PORT, got {value!r}"
        )
    return f"unix:{_resolve_path(path, base)}"


def _fallback(where: _Where, raw: dict[str, Any], prefix: str) -> str | None:
    value = where.optional_str(raw, "fallback", prefix)
    if value is not None and value not in FALLBACKS:
        raise where.fail(_key(prefix, "fallback"), f"expected one of {', '.join(FALLBACKS)}")
    return value


def _optional_path(
    where: _Where, raw: dict[str, Any], name: str, prefix: str, base: Path
) -> Path | None:
    value = where.optional_str(raw, name, prefix)
    return _resolve_path(value, base) if value is not None else None


class _Where:
    """Reads values out of the document, raising errors that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {message}")

    def no_unknown_keys(
        self, raw: dict[str, Any], known: tuple[str, ...], prefix: str = ""
    ) -> None:
        for name in raw:
            if name not in known:
                raise self.fail(_key(prefix, name), f"unknown key (known here: {', '.join(known)})")

    def optional_str(self, raw: dict[str, Any], name: str, prefix: str = "") -> str | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(_key(prefix, name), f"expected a non-empty string, got {_shown(value)}")
        return value

    def str_list(self, raw: dict[str, Any], name: str, prefix: str) -> tuple[str, ...]:
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(_key(prefix, name), f"expected a list of strings, got {_shown(value)}")
        return tuple(value)

    def flag(self, raw: dict[str, Any], name: str, prefix: str = "") -> bool:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(_key(prefix, name), f"expected true or false, got {_shown(value)}")
        return value

    def table(self, raw: dict[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(_key(prefix, name), f"expected a table, got {_toml_type(value)}")
        return value

    def profile_name(self, raw: dict[str, Any], name: str, prefix: str = "") -> str | None:
        value = self.optional_str(raw, name, prefix)
        if value is not None:
            try:
                get_profile(value)
            except ValueError as exc:
                raise self.fail(_key(prefix, name), str(exc)) from None
        return value

    def duration(self, raw: dict[str, Any], name: str, prefix: str = "") -> float | None:
        value = raw.get(name)
        if value is None:
            return None
        try:
            seconds = parse_duration(str(value)) if isinstance(value, str) else float(value)
            check_duration(seconds, value)
        except (TypeError, ValueError) as exc:
            raise self.fail(_key(prefix, name), str(exc)) from None
        if seconds <= 0 or isinstance(value, bool):
            raise self.fail(_key(prefix, name), "expected a positive duration like 1d or 6h")
        return seconds

    def retention(self, raw: dict[str, Any], prefix: str) -> Retention:
        self.no_unknown_keys(raw, RETENTION_KEYS, prefix)
        rules: Retention = {}
        for name, value in raw.items():
            if name == "keep_within":
                seconds = self.duration(raw, name, prefix)
                assert seconds is not None
                rules[name] = seconds
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise self.fail(_key(prefix, name), f"expected a count >= 0, got {_shown(value)}")
            else:
                try:
                    check_count(value, name)
                except ValueError as exc:
                    raise self.fail(_key(prefix, name), str(exc)) from None
                rules[name] = value
        return rules

    def overrides(self, raw: dict[str, Any], prefix: str) -> Overrides:
        parsed: Overrides = {}
        for name, value in raw.items():
            try:
                parsed[name] = parse_value(name, value)
            except ValueError as exc:
                raise self.fail(_key(prefix, name), str(exc)) from None
        return parsed


def _key(prefix: str, name: str) -> str:
    """`name` under an already-written dotted key, quoted if TOML needs it: sources."my agent"."""
    part = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
    return f"{prefix}.{part}" if prefix else part


def _shown(value: object) -> str:
    """A wrong value as the error shows it: its TOML type, and the value if it is short."""
    if isinstance(value, dict | list):
        return _toml_type(value)
    return f"{_toml_type(value)} {value!r}"


def _toml_type(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    if isinstance(value, dict):
        return "a table"
    return names.get(type(value), type(value).__name__)


def _resolve_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _resolve_location(where: _Where, key: str, text: str, base: Path) -> str:
    """A repository location: URLs as written, local paths relative to the config file.

    A URL with `user:password@` is refused without echoing it: credentials belong in
    the environment, and `config show` would print the location."""
    if has_userinfo(text):
        raise where.fail(
            key,
            f"{redact_userinfo(text)}: credentials do not belong in the location; "
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    return text if "://" in text else str(_resolve_path(text, base))

