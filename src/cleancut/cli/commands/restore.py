"""`cleancut restore`: a snapshot, or a source's state at a journal record or a time.

Which restore a request means, the restore and the in-flight file are
restorer/run.py's; this prints what was restored, what was refused or damaged, and
the journal's damage (exit codes: the outcome's, listed there).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes, progress_line
from cleancut.clock import parse_time
from cleancut.journal.repo.restore import PointRestore, lost_text
from cleancut.pathtext import shown_path
from cleancut.repository.sourcedirs import recorded_dirs
from cleancut.restorer.run import RestoreOutcome, RestoreRequest, Sample, restore


@click.command("restore")
@click.argument("snapshot", required=False)
@click.option(
    "--target",
    "-t",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to restore into (created if missing).",
)
@click.option(
    "--include",
    "includes",
    multiple=True,
    metavar="PATH",
    help="Restore only this path of the snapshot (repeatable).",
)
@click.option(
    "--dir",
    "only_dir",
    metavar="NAME",
    help="A snapshot of several directories: restore only directory NAME, its contents "
    "straight into --target (each directory back to its own place).",
)
@click.option("--name", help="With 'latest', --at or --seq: the source.")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="The newest snapshot at or before TIME (ISO 8601, or like '2h ago'); for a source "
    "with a shipped journal, that snapshot plus its journal replayed up to TIME.",
)
@click.option(
    "--seq",
    type=click.IntRange(min=0),
    metavar="N",
    help="The source's state at journal record N (a snapshot, then its journal "
    "replayed up to N).",
)
@click.option(
    "--accept-loss",
    is_flag=True,
    help="When the repository's journal is damaged, keep what replays and report the records "
    "lost (exit 3) instead of stopping with exit 17.",
)
@common_options
def command(
    common: Common,
    snapshot: str | None,
    target: Path,
    includes: tuple[str, ...],
    only_dir: str | None,
    name: str | None,
    at: str | None,
    seq: int | None,
    accept_loss: bool,
) -> RestoreOutcome:
    """Restore SNAPSHOT (an id, an id prefix, or 'latest') into --target.

    An incremental is restored by replaying its chain from the full, after every
    link of the chain has been verified. --seq N (or --at TIME, for a source that
    ships its journal) restores the last snapshot before that point into an empty
    target, then replays the journal's records up to it.
    """
    if sum(x is not None for x in (snapshot, at, seq)) != 1:
        raise click.UsageError("give one of SNAPSHOT, --at TIME or --seq N")
    moment = parse_time(at) if at is not None else None
    request = RestoreRequest(
        snapshot, target, list(includes), name, moment, seq, accept_loss, only_dir
    )

    def shown(sample: Sample) -> AbstractContextManager[None]:
        return progress_line(common.show_progress, sample)

    repo = common.open()
    try:
        outcome = restore(repo, request, shown)
    finally:
        repo.close()
    snap, result, point = outcome.snapshot, outcome.result, outcome.point
    for action in outcome.inflight:
        click.echo(
            f"in flight at capture: {action.get('key')} ({action.get('kind')}, "
            f"{action.get('state')}); reconcile by key, do not repeat",
            err=True,
        )
    if outcome.inflight_file is not None:
        click.echo(
            f"in-flight actions written to {shown_path(str(outcome.inflight_file))}", err=True
        )
    for line in result.refused:
        click.echo(f"refused: {line}", err=True)
    for line in result.damaged:
        click.echo(f"damaged: {line}", err=True)
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
    if common.json:
        common.emit(outcome.to_json())
    elif point is not None:
        common.say(_point_line(point, target))
    else:
        common.say(
            f"restored snapshot {snap.id[:12]} to {shown_path(str(target))}: {result.files} files, "
            f"{format_bytes(result.bytes_written)}"
        )
        if only_dir is None:
            for dir_name, original in recorded_dirs(snap.dirs).items():
                common.say(
                    f"  {dir_name}/ (backed up from {shown_path(original)}): put it back with "
                    f"--dir {dir_name} --target PATH"
                )
    if result.damaged:
        click.echo(
            f"cleancut: {len(result.damaged)} file(s) not restored because their data is "
            "damaged; run 'cleancut check --read-data'",
            err=True,
        )
    elif result.refused:
        click.echo(
            f"cleancut: refused {len(result.refused)} unsafe entr"
            f"{'y' if len(result.refused) == 1 else 'ies'}; nothing was written outside "
            f"{shown_path(str(target))}",
            err=True,
        )
    elif result.errors:
        click.echo(
            f"cleancut: {len(result.errors)} file(s) could not be written into "
            f"{shown_path(str(target))}",
            err=True,
        )
    elif point is not None:
        _journal_damage(outcome)
    return outcome


def _point_line(point: PointRestore, target: Path) -> str:
    replay = point.replay
    how = "continued the replay of" if point.resumed else "restored"
    files = (
        f": {point.restore.files} files, {format_bytes(point.restore.bytes_written)}"
        if point.restore
        else ""
    )
    line = (
        f"{how} snapshot {point.snapshot.id[:12]} (journal record {replay.base_seq}) to "
        f"{shown_path(str(target))}{files}"
    )
    if replay.first_seq is not None:
        line += (
            f"; replayed records {replay.first_seq}..{replay.reached_seq} "
            f"({replay.records} records, {format_bytes(replay.bytes)})"
        )
    return line + f"; the workspace is at record {replay.reached_seq}"


def _journal_damage(outcome: RestoreOutcome) -> None:
    """Damage in the repository's journal: where the replay stopped (exit 17), or the
    records the accepted loss left out (exit 3)."""
    assert outcome.point is not None
    replay = outcome.point.replay
    at = f"{shown_path(str(outcome.target))} is at record {replay.reached_seq}"
    if outcome.journal_stopped:
        click.echo(f"cleancut: {replay.error}; {at}; --accept-loss keeps it so", err=True)
        return
    if not outcome.loss_accepted:
        return
    lost = [lost_text(replay)] if replay.lost else []
    if replay.stopped_by is not None and replay.reached_seq < replay.target_seq:
        lost.append(f"{replay.reached_seq + 1}..{replay.target_seq} (replay stopped)")
    bent = f"; {len(replay.lossy)} operation(s) bent after the loss" if replay.lossy else ""
    click.echo(
        f"cleancut: accepted loss: journal records {', '.join(lost)} are not in the restored "
        f"workspace{bent}; {at}",
        err=True,
    )
