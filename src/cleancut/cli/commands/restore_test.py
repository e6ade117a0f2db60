"""`cleancut restore-test`: restore a snapshot into a sandbox, check it, record the result.

Exit 0 only if every step passed, else 4 with one line naming the failed steps.
"""

from __future__ import annotations

from pathlib import Path

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes
from cleancut.errors import UsageError
from cleancut.ops.restore_test import (
    DEFAULT_SMOKE_TIMEOUT,
    PICKS,
    RestoreTestResult,
    pick_snapshot,
    run_restore_test,
)
from cleancut.settings.profiles import parse_duration
from cleancut.validation.rules import DEFAULT_RULES


@click.command("restore-test")
@click.option("--source", help="The source to test (needed when the repository holds several).")
@click.option(
    "--pick",
    type=click.Choice(PICKS),
    default="latest",
    show_default=True,
    help="Which snapshot: the newest (its whole chain), a random one, or the oldest untested.",
)
@click.option(
    "--smoke",
    "smoke_cmd",
    metavar="CMD",
    help="Run CMD (through the shell, in the sandbox, with CLEANCUT_RESTORE_DIR set); "
    "it must exit 0.",
)
@click.option(
    "--sandbox",
    type=click.Path(file_okay=False, path_type=Path),
    help="Restore under this directory (default: the system temp dir).",
)
@click.option("--keep", is_flag=True, help="Keep the restored sandbox and print its path.")
@click.option(
    "--timeout",
    default=f"{DEFAULT_SMOKE_TIMEOUT:g}s",
    show_default=True,
    metavar="DURATION",
    help="Time limit of the smoke command (like 90s, 10m).",
)
@common_options
def command(
    common: Common,
    source: str | None,
    pick: str,
    smoke_cmd: str | None,
    sandbox: Path | None,
    keep: bool,
    timeout: str,
) -> RestoreTestResult:
    """Restore a snapshot into a sandbox, check it end to end, and record the result.

    Steps: restore (the snapshot's verified chain), verify (every file re-read and
    re-hashed against the snapshot), validate (JSON, JSONL and SQLite files usable, by
    the source's `validate` rules; a file its capture found invalid already does not
    fail it), smoke (with --smoke). The result is stored in the repository, where `status`
    reads it; a snapshot that failed is never the parent of a later backup.
    Exit 0 only if every step passed, else 4.
    """
    try:
        limit = parse_duration(timeout)
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    repo = common.open()
    try:
        snap = pick_snapshot(repo, source, pick)
        configured = common.config.sources.get(snap.name)  # its `validate` rules, if any
        rules = configured.validate if configured else DEFAULT_RULES
        result = run_restore_test(repo, snap, sandbox, smoke_cmd, limit, keep=keep, rules=rules)
    finally:
        repo.close()
    if common.json:
        common.emit(result.to_json())
    else:
        _print(common, result)
    if not result.passed:
        click.echo(f"cleancut: {failure_line(result)}", err=True)
    return result


def failure_line(result: RestoreTestResult) -> str:
    """One line naming the snapshot and the steps that failed (and those not run)."""
    line = (
        f"restore test of snapshot {result.snapshot.id[:12]} failed: "
        f"{', '.join(result.failed_steps)}"
    )
    if result.skipped_steps:
        line += f" (not run: {', '.join(result.skipped_steps)})"
    return line


def _print(common: Common, result: RestoreTestResult) -> None:
    snap = result.snapshot
    verdict = "passed" if result.passed else "FAILED"
    common.say(
        f"restore test of snapshot {snap.id[:12]} ({snap.name}, {snap.kind} seq {snap.seq} "
        f"of chain {(snap.chain or '-')[:12]}, taken {snap.time[:19].replace('T', ' ')}): "
        f"{verdict}"
    )
    for step in result.steps:
        status = "skipped" if step.skipped else ("passed" if step.passed else "FAILED")
        common.say(f"  {step.name:<9} {status:<7} {step.duration_s:7.2f}s  {step.detail}")
    common.say(
        f"RTO {result.rto_s:.2f}s for {result.files} files, {format_bytes(result.bytes)}; "
        f"recorded as {result.record_id[:12]}"
    )
    if result.kept:
        common.say(f"sandbox kept at {result.sandbox}")
