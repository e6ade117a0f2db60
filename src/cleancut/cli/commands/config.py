"""`cleancut config show`: the effective settings, and the layer each one came from.

It reads no repository and asks for no passphrase, so an operator can check a
config file (or a schedule's environment) before anything exists. The
repository's own profile, chosen at init, is given with --profile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from cleancut.redact import redact_userinfo
from cleancut.settings.config_file import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    ConfigFile,
    Effective,
    Located,
    effective,
    first_set,
    parse_assignments,
)
from cleancut.settings.profiles import (
    CHAIN_CAP,
    MAX_RESTORE_TEST_INTERVAL,
    MIN_JOURNAL_WINDOW,
    MISS_ALERT_THRESHOLD,
    field_names,
    format_duration,
    format_value,
)
from cleancut.validation.rules import DEFAULT_VALIDATE

from ..context import Common, common_options

F = TypeVar("F", bound=Callable[..., Any])


@click.group("config")
def command() -> None:
    """Inspect the configuration (profiles, config file, overrides)."""


@command.command("show")
@click.option("--source", "-s", metavar="NAME", help="Show the settings of this config source.")
@click.option(
    "--profile",
    metavar="NAME",
    help="The repository's profile, as chosen at init (config show reads no repository).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one setting, as a command would (repeatable), e.g. --set max_full_age=6h.",
)
@common_options
def show(
    common: Common,
    source: str | None,
    profile: str | None,
    assignments: tuple[str, ...],
) -> None:
    """Print the effective settings and where each value came from."""
    config = common.config
    result = effective(config, source, profile, parse_assignments(assignments))
    ctx = click.get_current_context()
    places = {
        "config_file": Located(
            str(config.path) if config.path else None, _config_origin(ctx, config)
        ),
        "repository": _layered(ctx, "repo", common.repo, "CLEANCUT_REPO", config.repository),
        "password_file": _layered(
            ctx, "password_file", common.password_file, "CLEANCUT_PASSWORD_FILE",
            config.password_file,
        ),
    }  # fmt: skip
    # A location given by option or environment may carry user:password@ (the config
    # file refuses that); what is shown is only where the value came from.
    places = {
        key: Located(redact_userinfo(p.value) if p.value else p.value, p.origin)
        for key, p in places.items()
    }
    report = _report(config, result, places)
    if common.json:
        common.emit(report)
    else:
        _print(report)


def _layered(
    ctx: click.Context, param: str, given: str | None, envvar: str, from_file: str | None
) -> Located:
    """Option > environment > config file, named the way the operator would set it."""
    source = ctx.get_parameter_source(param)
    option = "--" + param.replace("_", "-")
    return first_set(
        (given if source == ParameterSource.COMMANDLINE else None, option),
        (given if source == ParameterSource.ENVIRONMENT else None, envvar),
        (from_file, "config file"),
    )


def _config_origin(ctx: click.Context, config: ConfigFile) -> str:
    source = ctx.get_parameter_source("config_path")
    if source == ParameterSource.COMMANDLINE:
        return "--config"
    if source == ParameterSource.ENVIRONMENT:
        return CONFIG_ENV
    return f"./{DEFAULT_CONFIG_NAME}" if config.path else "none found"


def _report(config: ConfigFile, result: Effective, places: dict[str, Located]) -> dict[str, Any]:
    """Everything config show says, as one JSON-ready document (text output prints the same)."""
    values = result.profile
    src = result.source
    return {
        **{key: {"value": p.value, "origin": p.origin} for key, p in places.items()},
        "sources": sorted(config.sources),
        "source": None
        if src is None
        else {
            "name": src.name,
            "path": str(src.path) if src.path else None,
            "dirs": {d.name: str(d.path) for d in src.dirs},
            "agent": src.agent,
            "exclude": list(src.exclude),
            "tags": list(src.tags),
            # The rules in order, then the built-in defaults for what none matches.
            "validate": [
                {"pattern": p, "format": k, "origin": "config file"} for p, k in src.validate.rules
            ]
            + [{"pattern": p, "format": k, "origin": "default"} for p, k in DEFAULT_VALIDATE],
            "preset": src.preset,
            "resolved": [
                {"what": what, "value": value, "origin": origin}
                for what, value, origin in src.resolved
            ],
        },
        "profile": {"name": result.profile_name, "origin": result.profile_origin},
        "settings": {
            name: {
                "value": getattr(values, name),
                "text": format_value(name, getattr(values, name)),
                "origin": result.origin[name],
            }
            for name in field_names()
        },
        "fixed": {
            "chain_cap": CHAIN_CAP,
            "max_restore_test_interval": MAX_RESTORE_TEST_INTERVAL,
            "miss_alert_threshold": MISS_ALERT_THRESHOLD,
            "min_journal_window": MIN_JOURNAL_WINDOW,
        },
    }


def _print(report: dict[str, Any]) -> None:
    width = max(len(name) for name in report["settings"]) + 2
    for key in ("config_file", "repository", "password_file"):
        place = report[key]
        value = place["value"] or "-"
        click.echo(f"{key.replace('_', ' '):<{width}}{value}  ({place['origin']})")
    click.echo(f"{'sources':<{width}}{', '.join(report['sources']) or '-'}")
    if report["source"]:
        src = report["source"]
        click.echo(f"{'source':<{width}}{src['name']}: {src['path'] or 'directories'}")
        for dir_name, dir_path in src["dirs"].items():
            click.echo(f"{'':<{width}}  {dir_name} = {dir_path}")
        if src["agent"]:
            click.echo(f"{'  agent':<{width}}{src['agent']}")
        if src["preset"]:
            click.echo(f"{'  preset':<{width}}{src['preset']}, which resolved:")
            for item in src["resolved"]:
                click.echo(f"{'':<{width}}  {item['what']}: {item['value']}  ({item['origin']})")
        click.echo(f"{'  exclude':<{width}}{', '.join(src['exclude']) or '-'}")
        click.echo(f"{'  tags':<{width}}{', '.join(src['tags']) or '-'}")
        own = [
            f"{r['pattern']} = {r['format']}" for r in src["validate"] if r["origin"] != "default"
        ]
        rules = f"{', '.join(own)}  (config file), then the defaults" if own else "the defaults"
        click.echo(f"{'  validate':<{width}}{rules}")
    # The origin already reads "profile NAME (layer)"; print it once, not "NAME (profile NAME ...)".
    click.echo(f"{'profile':<{width}}{report['profile']['origin'].removeprefix('profile ')}")
    click.echo()
    click.echo(f"{'setting':<{width}}{'value':<12}origin")
    for name, setting in report["settings"].items():
        click.echo(f"{name:<{width}}{setting['text']:<12}{setting['origin']}")
    fixed = report["fixed"]
    click.echo()
    click.echo("fixed (no profile or setting changes these)")
    click.echo(f"{'chain cap':<{width}}{format_duration(fixed['chain_cap'])}")
    click.echo(
        f"{'restore test':<{width}}at least every "
        f"{format_duration(fixed['max_restore_test_interval'])}"
    )
    click.echo(
        f"{'quiesce miss alert':<{width}}after {fixed['miss_alert_threshold']} consecutive misses"
    )
    click.echo(
        f"{'rolling journal':<{width}}at least the last "
        f"{format_duration(fixed['min_journal_window'])}"
    )
