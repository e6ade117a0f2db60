"""`cleancut tick` and `cleancut daemon`: do what is due for each configured source.

`tick` does it once and exits (1 if any action failed); `daemon` ticks in a loop and
serves Prometheus metrics and the status page (ops/page/). Both take hot backups of
sources that name an agent.
"""

from __future__ import annotations

import functools
import signal
import threading
from pathlib import Path

import click

from cleancut.cli.context import Common, common_options
from cleancut.errors import UsageError
from cleancut.hot.orchestrator import journal_ack, tick_backup
from cleancut.ops.daemon import MetricsServer, run_daemon
from cleancut.ops.page.server import StatusPageServer
from cleancut.ops.prometheus_textfile import check_textfile_name, write_textfile
from cleancut.ops.tick import Action, BackupFn, TickOutcome, tick
from cleancut.settings.profiles import parse_duration


def _backup(common: Common) -> BackupFn:
    """Hot backups for sources with an agent, alerting as the config file says."""
    return functools.partial(tick_backup, alert_command=common.config.alert_command)


def _print(common: Common, actions: list[Action]) -> None:
    if common.json:
        common.emit(TickOutcome(actions).to_json())
        return
    if not actions:
        common.say("nothing is due")
    for a in actions:
        if a.ok and common.quiet:
            continue  # --quiet: only failures, for cron mail
        mark = "ok" if a.ok else "FAILED"
        click.echo(f"{a.source}: {a.what} {mark}: {a.detail}", err=not a.ok)


@click.command("tick")
@click.argument("sources", nargs=-1)
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Then write the Prometheus metrics to this node_exporter textfile (*.prom), "
    "atomically; exit 1 if it cannot be written.",
)
@common_options
def command(common: Common, sources: tuple[str, ...], textfile: Path | None) -> TickOutcome:
    """Do what is due for each configured source: ship its journal, back up (hot when it
    names an agent), restore-test, forget; then copy ([replication]) and prune.

    Safe to run from cron or a systemd timer every minute: it reads what is due
    from the repository, does it once, and exits.
    """
    if textfile is not None:
        check_textfile_name(textfile)  # before the work, not after it
    repo = common.open()
    try:
        outcome = tick(
            repo,
            common.config,
            list(sources) or None,
            backup=_backup(common),
            journal_ack=journal_ack,
        )
        _print(common, outcome.actions)
        if textfile is not None:
            write_textfile(textfile, repo, common.config)
    finally:
        repo.close()
    return outcome


@click.command("daemon")
@click.option("--interval", default="60s", show_default=True, help="Time between ticks.")
@click.option(
    "--metrics-port",
    type=int,
    default=9187,
    show_default=True,
    help="Prometheus metrics port on loopback (0: any free port; -1: none).",
)
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--page-port",
    type=int,
    default=9188,
    show_default=True,
    help="Status page port on loopback (0: any free port; -1: none).",
)
@click.option("--page-address", default="127.0.0.1", show_default=True)
@common_options
def daemon(
    common: Common,
    interval: str,
    metrics_port: int,
    metrics_address: str,
    page_port: int,
    page_address: str,
) -> None:
    """Run ticks in a loop, serve Prometheus metrics at /metrics and the status page at /."""
    try:
        seconds = parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    repo = common.open()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    if metrics_port >= 0:
        server = MetricsServer(metrics_address, metrics_port)
        server.start()
        click.echo(f"metrics on http://{metrics_address}:{server.port}/metrics", err=True)
    page = None
    if page_port >= 0:
        page = StatusPageServer(page_address, page_port)
        page.start()
        click.echo(f"status page on http://{page_address}:{page.port}/", err=True)
    try:
        run_daemon(
            repo,
            common.config,
            seconds,
            server,
            stop,
            lambda a: _print(common, a),
            backup=_backup(common),
            journal_ack=journal_ack,
            page=page,
        )
    finally:
        if server is not None:
            server.stop()
        if page is not None:
            page.stop()
        repo.close()
