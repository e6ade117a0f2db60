from __future__ import annotations

import sys
from pathlib import Path

import click
from cleancut.agent.inflight import inflight_of, write_inflight
from cleancut.store.clock import parse_time
from cleancut.store.errors import ExitCode, UsageError
from cleancut.store.journal_restore import PointRestore, has_journal, lost_text, restore_to_point
from cleancut.store.pathtext import shown_path
from cleancut.store.restore import Restorer, RestoreResult
from cleancut.store.snapshot import Snapshot, snapshot_at
from cleancut.store.sourcedirs import recorded_dirs

from ..context import Common, common_options
from ..progress import format_bytes, progress_line


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
) -> None:
    """Restore SNAPSHOT (an id, an id prefix, or 'latest') into --target.

    An incremental is restored by replaying its chain from the full, after every
    link of the chain has been verified. --seq N (or --at TIME, for a source that
    ships its journal) restores the last snapshot before that point into an empty
    target, then replays the journal's records up to it.
    """
    if sum(x is not None for x in (snapshot, at, seq)) != 1:
        raise click.UsageError("give one of SNAPSHOT, --at TIME or --seq N")
    moment = parse_time(at) if at is not None else None
    repo = common.open()
    point: PointRestore | None = None
    try:
        if seq is not None or moment is not None:
            source = name or _single_source(repo.snapshots())
            if seq is not None and source is None:
                raise UsageError("--seq needs --name: the source whose journal to replay")
            journal = source is not None and (seq is not None or has_journal(repo, source))
        else:
            source, journal = name, False
        if accept_loss and not journal:
            raise UsageError(
                "--accept-loss applies to a journal replay (--seq, or --at for a source with a "
                "shipped journal)"
            )
        if journal:
            assert source is not None
            if includes or only_dir:
                raise UsageError("--include and --dir cannot be combined with a journal replay")
            point = restore_to_point(repo, source, target, seq, moment, accept_loss=accept_loss)
            snap, result = point.snapshot, point.restore or RestoreResult()
        else:
            if moment is not None:
                snap = repo.load_snapshot(snapshot_at(repo.snapshots(), moment, name).id)
            else:
                snap = repo.find_snapshot(snapshot or "latest", name)
            total = int(snap.summary.get("bytes_total", 0))
            done = [0]

            def on_bytes(n: int) -> None:
                done[0] += n

            restorer = Restorer(repo, snap, target, list(includes), on_bytes, only_dir)
            with progress_line(
                common.show_progress, lambda: (restorer.result.files, done[0], 0, total)
            ):
                result = restorer.run()
    finally:
        repo.close()
    inflight = inflight_of(snap)
    inflight_file = write_inflight(snap, target)
    for action in inflight:
        click.echo(
            f"in flight at capture: {action.get('key')} ({action.get('kind')}, "
            f"{action.get('state')}); reconcile by key, do not repeat",
            err=True,
        )
    if inflight_file is not None:
        click.echo(f"in-flight actions written to {shown_path(str(inflight_file))}", err=True)
    for line in result.refused:
        click.echo(f"refused: {line}", err=True)
    for line in result.damaged:
        click.echo(f"damaged: {line}", err=True)
    for line in result.errors:
        click.echo(f"error: {line}", err=True)
    if common.json:
        doc = {
            "snapshot_id": snap.id,
            "target": str(target),
            "files": result.files,
            "dirs": result.dirs,
            "symlinks": result.symlinks,
            "bytes_written": result.bytes_written,
            "refused": result.refused,
            "damaged": result.damaged,
            "errors": result.errors,
            "inflight": inflight,
            "inflight_file": str(inflight_file) if inflight_file else None,
            "directories": recorded_dirs(snap.dirs),
        }
        if point is not None:
            doc["journal"] = {**point.replay.to_json(), "resumed": point.resumed}
        common.emit(doc)
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
        sys.exit(ExitCode.INTEGRITY)
    if result.refused:
        click.echo(
            f"cleancut: refused {len(result.refused)} unsafe entr"
            f"{'y' if len(result.refused) == 1 else 'ies'}; nothing was written outside "
            f"{shown_path(str(target))}",
            err=True,
        )
        sys.exit(ExitCode.UNSAFE_ENTRY)
    if result.errors:
        click.echo(
            f"cleancut: {len(result.errors)} file(s) could not be written into "
            f"{shown_path(str(target))}",
            err=True,
        )
        sys.exit(ExitCode.FATAL)
    if point is not None:
        _journal_exit(point, target, accept_loss)


def _single_source(snapshots: list[Snapshot]) -> str | None:
    names = {s.name for s in snapshots}
    return next(iter(names)) if len(names) == 1 else None


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


def _journal_exit(point: PointRestore, target: Path, accept_loss: bool) -> None:
    """Damage in the repository's journal: exit 17, or 3 when the loss was accepted."""
    replay = point.replay
    at = f"{shown_path(str(target))} is at record {replay.reached_seq}"
    if replay.stopped_by is not None and not accept_loss:
        click.echo(f"cleancut: {replay.error}; {at}; --accept-loss keeps it so", err=True)
        sys.exit(ExitCode.JOURNAL_DAMAGED)
    if not replay.problems:
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
    sys.exit(ExitCode.WARNINGS)
