"""`cleancut backup`: snapshot one directory, or take a hot backup of a running agent.

SOURCE and the profile are resolved by settings/run_settings.py; the snapshot is
taken by ops/runner.py (plain) or hot/orchestrator.py (hot); its outcome
(archiver/outcome.py) gives the exit code: 3 with warnings, 7 on a quiesce miss
with a fallback snapshot, 19 when the agent broke its word.

The engine's modules (the archiver, the repository and its cache's SQLAlchemy) are
imported inside the command, after a forked child has started warming the source's
metadata (fsio/warm.py): the imports, the key derivation and the plan then overlap
the disk reads a cold walk would wait for (docs/decisions/0011-unchanged-backup-path.md).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cleancut.archiver.excludes import is_excluded
from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes, progress_line
from cleancut.errors import UsageError
from cleancut.fsio.warm import Warmer
from cleancut.repository.sourcedirs import Source, default_name
from cleancut.settings.config_file import SourceConfig
from cleancut.settings.profiles import parse_duration
from cleancut.settings.run_settings import BackupSource, backup_profile, backup_source

if TYPE_CHECKING:
    from cleancut.archiver.backup import BackupResult
    from cleancut.archiver.outcome import BackupOutcome
    from cleancut.hot.options import HotOptions, HotResult


@click.command("backup")
@click.argument("source", required=False)
@click.option(
    "--dir",
    "dir_args",
    multiple=True,
    metavar="NAME=PATH",
    help="Instead of SOURCE: one of several directories captured in one cut (repeatable), "
    "e.g. --dir state=~/.openclaw --dir workspace=/srv/ws; needs --name.",
)
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="GLOB",
    help="Skip matching paths (repeatable); a pattern with '/' matches the relative path.",
)
@click.option("--name", help="The source's name in the catalog (default: its absolute path).")
@click.option("--full", "force_full", is_flag=True, help="Start a new chain with a full snapshot.")
@click.option("--profile", help="Profile for this run (default: config file, then repository).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one profile setting for this run, e.g. --set max_full_age=6h.",
)
@click.option("--agent", metavar="unix:PATH|openclaw://HOST:PORT",
              help="Hot backup: the agent's control socket, or an OpenClaw gateway.")
@click.option("--agent-token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the OpenClaw gateway token (else $OPENCLAW_GATEWAY_TOKEN, "
                   "else the gateway's config file).")
@click.option(
    "--quiesce-timeout", metavar="DURATION", help="How long the agent may take to quiesce."
)
@click.option(
    "--horizon", metavar="DURATION", help="How long to wait for in-flight actions to settle."
)
@click.option(
    "--fallback",
    type=click.Choice(["none", "frozen", "unquiesced", "journal"]),
    help="On a quiesce miss: no snapshot (default), or one labelled frozen, unquiesced, or "
    "journal (rebuilt from the shipped journal; needs --journal).",
)
@click.option("--journal", "journal_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The agent's journal directory (for --fallback journal).")
@click.option("--freeze", "freeze_pid", type=int, metavar="PID",
              help="Stop PID's process group (SIGSTOP) for the capture.")
@click.option("--pre", metavar="CMD", help="Command run before the capture (label hooked).")
@click.option("--post", metavar="CMD", help="Command run after the capture, always.")
@click.option("--hook-timeout", metavar="DURATION",
              help="Limit for each hook; also the freeze watchdog (default 60s).")
@click.option("--staging", type=click.Path(file_okay=False, path_type=Path),
              help="Staging directory (best on the source's filesystem, for reflinks).")
@click.option("--lease", metavar="DURATION",
              help="Quiesce lease, renewed every third of it during the capture (default 10s).")
@click.option("--alert-command", metavar="CMD",
              help="Run when the source has missed quiesce 3 windows in a row.")
@common_options
def command(
    common: Common,
    source: str | None,
    dir_args: tuple[str, ...],
    tags: tuple[str, ...],
    excludes: tuple[str, ...],
    name: str | None,
    force_full: bool,
    profile: str | None,
    assignments: tuple[str, ...],
    agent: str | None,
    agent_token_file: Path | None,
    quiesce_timeout: str | None,
    horizon: str | None,
    fallback: str | None,
    freeze_pid: int | None,
    pre: str | None,
    post: str | None,
    hook_timeout: str | None,
    staging: Path | None,
    lease: str | None,
    alert_command: str | None,
    journal_dir: Path | None,
) -> BackupOutcome:
    """Snapshot one directory: SOURCE is a path, or the name of a source in the config file.

    The policy decides a full or an incremental (see --full and the profile).
    With --agent (or --freeze, or --pre/--post) the snapshot is a hot backup of a
    running agent: a short pause for a clean cut, then the store runs from a
    staged copy while the agent works.

    With --dir NAME=PATH (repeated) instead of SOURCE, several directories are one
    snapshot, captured in the same cut: each is the directory NAME at its root.
    """
    target = backup_source(common.config, source, name, excludes, tags, dir_args)
    warmer = _warm(target.path, list(target.excludes))
    try:
        return _backup(
            common, target, warmer, force_full, profile, assignments, agent, agent_token_file,
            quiesce_timeout, horizon, fallback, freeze_pid, pre, post, hook_timeout, staging,
            lease, alert_command, journal_dir,
        )
    finally:
        warmer.stop()


def _warm(source: Source, excludes: list[str]) -> Warmer:
    """Start reading the source's metadata in a child process (fsio/warm.py)."""
    tops: list[tuple[str, str | os.PathLike[str]]] = (
        [(d.name, d.path) for d in source] if isinstance(source, tuple) else [("", source)]
    )
    return Warmer(tops, lambda rel: is_excluded(rel, excludes)).start()


def _backup(
    common: Common,
    target: BackupSource,
    warmer: Warmer,
    force_full: bool,
    profile: str | None,
    assignments: tuple[str, ...],
    agent: str | None,
    agent_token_file: Path | None,
    quiesce_timeout: str | None,
    horizon: str | None,
    fallback: str | None,
    freeze_pid: int | None,
    pre: str | None,
    post: str | None,
    hook_timeout: str | None,
    staging: Path | None,
    lease: str | None,
    alert_command: str | None,
    journal_dir: Path | None,
) -> BackupOutcome:
    from cleancut.archiver.backup import BackupOptions, Progress, estimate
    from cleancut.archiver.outcome import BackupOutcome
    from cleancut.hot.options import HotResult
    from cleancut.ops.runner import cap_uploads, run_backup

    configured = target.configured
    repo = common.open()
    try:
        progress = Progress()
        if common.show_progress:
            threading.Thread(
                target=estimate, args=(target.path, list(target.excludes), progress), daemon=True
            ).start()
        settings = backup_profile(
            common.config, target, repo.config.profile, profile, assignments, quiesce_timeout,
            horizon,
        )
        options = BackupOptions(
            name=target.name or default_name(target.path),
            tags=list(target.tags),
            excludes=list(target.excludes),
            force_full=force_full,
            max_full_age=settings.max_full_age,
        )

        def sample() -> tuple[int, int, int, int]:
            p = progress
            return p.files_done, p.bytes_done, p.files_total, p.bytes_total

        cap_uploads(repo, common.limit_upload is not None, settings.bandwidth_cap_mbit)
        hot = _hot_options(
            configured, agent, fallback, freeze_pid, pre, post, hook_timeout, staging,
            alert_command, common.config.alert_command,
        )
        if lease is not None:
            hot.lease = _duration("--lease", lease)
        hot.agent_token_file = agent_token_file
        hot.journal = journal_dir or (configured.journal if configured else None)
        if configured:
            hot.formats = configured.validate
        if hot.mode is None:
            _refuse_hot_only(quiesce_timeout, horizon, fallback, hook_timeout, staging, lease,
                             alert_command, journal_dir, agent_token_file)
        hot.quiesce_timeout = settings.quiesce_timeout
        hot.horizon = settings.horizon
        with progress_line(common.show_progress, sample):
            if hot.mode is None:
                outcome = BackupOutcome(run_backup(repo, target.path, options, progress))
            else:
                from cleancut.hot.orchestrator import hot_backup  # only a hot backup needs it

                warmer.stop()  # nothing beside the pause: it reads a staged copy anyway

                outcome = BackupOutcome.of_hot(
                    hot_backup(repo, target.path, options, hot, progress)
                )
    finally:
        repo.close()
    if isinstance(outcome.hot, HotResult):
        _report_hot(common, outcome.hot)
    else:
        _report(common, outcome.result)
    return outcome


def _hot_options(
    configured: SourceConfig | None,
    agent: str | None,
    fallback: str | None,
    freeze_pid: int | None,
    pre: str | None,
    post: str | None,
    hook_timeout: str | None,
    staging: Path | None,
    alert_command: str | None,
    config_alert: str | None = None,
) -> HotOptions:
    """Command line first, then the source's table in the config file."""
    from cleancut.hot.options import DEFAULT_HOOK_TIMEOUT, HotOptions

    limit = _duration("--hook-timeout", hook_timeout) if hook_timeout else DEFAULT_HOOK_TIMEOUT
    c = configured
    hot = HotOptions(
        agent=agent or (c.agent if c and freeze_pid is None and not (pre or post) else None),
        fallback=fallback or (c.fallback if c and c.fallback else "none"),
        freeze_pid=freeze_pid,
        pre=pre or (c.pre if c and not agent else None),
        post=post or (c.post if c and not agent else None),
        hook_timeout=limit,
        watchdog=limit,
        staging=staging or (c.staging if c else None),
        alert_command=alert_command or config_alert,
    )
    if hot.agent and hot.freeze_pid is not None and hot.fallback != "frozen":
        raise UsageError("--freeze with --agent names the pid for --fallback frozen only")
    return hot


def _refuse_hot_only(*given: object) -> None:
    """Options that only mean something for a hot backup must not be silently ignored."""
    if any(value is not None for value in given):
        raise UsageError(
            "--quiesce-timeout, --horizon, --fallback, --hook-timeout, --staging, --lease, "
            "--journal, --alert-command and --agent-token-file need a hot backup: add "
            "--agent, --freeze or --pre/--post"
        )


def _duration(option: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option}: expected a duration above 0, like 10s")
    return seconds


def _report(common: Common, result: BackupResult) -> None:
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if common.json:
        common.emit(result.summary())
    else:
        common.say(_saved_line(result))


def _saved_line(result: BackupResult) -> str:
    return (
        f"{result.snapshot.kind} snapshot {result.snapshot.id[:12]} saved "
        f"(seq {result.snapshot.seq}: {result.snapshot.reason}): "
        f"{result.files} files, {result.dirs} dirs, "
        f"{format_bytes(result.bytes_read)} read, {format_bytes(result.bytes_added)} added "
        f"in {result.duration_s:.1f}s"
    )


def _report_hot(common: Common, hot: HotResult) -> None:
    result = hot.backup
    assert result is not None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if hot.quiesce_missed:
        click.echo(f"warning: {hot.miss_reason}", err=True)
    for alert in hot.alerts:
        click.echo(f"alert: {alert}", err=True)
    if common.json:
        common.emit(hot.summary())
    else:
        capture = hot.capture
        pause = capture.get("pause_ms")
        steps = ", ".join(f"{k} {v:.0f}ms" for k, v in capture.get("steps_ms", {}).items())
        common.say(f"{_saved_line(result)}; {capture.get('consistency')}")
        common.say(
            f"pause {pause:.1f} ms" if pause is not None else "no pause (not quiesced)"
        )
        common.say(f"steps: {steps}")
        for action in capture.get("inflight", []):
            common.say(
                f"in flight: {action.get('key')} ({action.get('kind')}, {action.get('state')} "
                f"since {action.get('since')})"
            )

