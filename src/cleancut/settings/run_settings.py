"""The settings one run uses: which source a `backup` names, and the profile it runs with.

The config file (config_file.py) and the built-in profiles (profiles.py) are the
layers; this module stacks them for a run as `backup` does, and `status` and
`forget` judge a source against the same stack:

- a SOURCE that names a [sources.NAME] table backs up that table's path (or its
  named directories), with its excludes and tags before the command line's, under
  its name (unless --name); anything else is a path; instead of SOURCE, --dir
  NAME=PATH (repeated) names several directories captured in one cut (decision 0006);
- the profile is --profile if given (it replaces the one the file or the source
  names; their overrides still apply on top), else the source's, else the file's,
  else the repository's; --set KEY=VALUE, --quiesce-timeout and --horizon override
  single values for this run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cleancut.errors import UsageError
from cleancut.repository.sourcedirs import Source, make_dirs, parse_dir

from .config_file import ConfigFile, SourceConfig, effective, parse_assignments
from .profiles import Profile, get_profile


@dataclass(frozen=True)
class BackupSource:
    """What a `backup SOURCE` backs up, the config file's table and the command line merged."""

    path: Source  # a directory, or several named ones
    name: str | None  # None: the snapshot is named after the absolute path(s)
    excludes: tuple[str, ...]
    tags: tuple[str, ...]
    configured: SourceConfig | None  # the [sources.NAME] table SOURCE names, if any


def backup_source(
    config: ConfigFile,
    source: str | None,
    name: str | None,
    excludes: tuple[str, ...],
    tags: tuple[str, ...],
    dir_args: tuple[str, ...] = (),
) -> BackupSource:
    """SOURCE as a configured source's name, else as a path; or --dir NAME=PATH, several."""
    if (source is None) == (not dir_args):
        raise UsageError("give SOURCE (a path or a configured source) or --dir NAME=PATH, one")
    if source is None:
        return BackupSource(make_dirs([parse_dir(d) for d in dir_args]), name, excludes, tags,
                            None)
    configured = config.sources.get(source)
    if configured is None:
        return BackupSource(Path(source).absolute(), name, excludes, tags, None)
    return BackupSource(
        configured.source,
        name or configured.name,
        (*configured.exclude, *excludes),
        (*configured.tags, *tags),
        configured,
    )


def backup_profile(
    config: ConfigFile,
    source: BackupSource,
    repo_profile: str,
    profile: str | None = None,
    assignments: tuple[str, ...] = (),
    quiesce_timeout: str | None = None,
    horizon: str | None = None,
) -> Profile:
    """The profile a backup of `source` runs with (see the module docstring)."""
    overrides = parse_assignments(assignments)
    if quiesce_timeout is not None:
        overrides["quiesce_timeout"] = quiesce_timeout
    if horizon is not None:
        overrides["horizon"] = horizon
    named = source.configured.name if source.configured else None
    return effective(
        _with_profile(config, profile, named), named, repo_profile, overrides
    ).profile


def source_profiles(config: ConfigFile, repo_profile: str) -> tuple[Profile, dict[str, Profile]]:
    """The profile each source is backed up with, stacked as `backup` stacks it: the
    config file's sources get their own, every other source the shared layers'."""
    default = effective(config, None, repo_profile, {}).profile
    return default, {
        name: effective(config, name, repo_profile, {}).profile for name in config.sources
    }


def _with_profile(config: ConfigFile, profile: str | None, source: str | None) -> ConfigFile:
    """--profile for this run: it replaces the profile the file or the source names, and
    the file's and the source's overrides still apply on top, as with any profile."""
    if profile is None:
        return config
    try:
        get_profile(profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sources = dict(config.sources)
    if source is not None and source in sources:
        sources[source] = replace(sources[source], profile=profile)
    return replace(config, profile=profile, sources=sources)
