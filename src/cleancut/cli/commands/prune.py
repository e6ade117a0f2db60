"""`cleancut prune`: give back the space of packs no snapshot needs, in two phases.

The pruning is prune/prune.py's (mark, then sweep after a safety margin); this parses
the margin and prints one line per kind of action, lines `forget --prune` prints too.
"""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes
from cleancut.ops.maintenance import journal_retention_for
from cleancut.prune.prune import DEFAULT_REPACK_BELOW, PackNote, PruneReport, prune
from cleancut.settings.profiles import format_duration, parse_duration


def parse_margin(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--safety-margin") from exc


def _size(notes: list[PackNote]) -> str:
    return format_bytes(sum(n.size for n in notes))


def report_lines(report: PruneReport) -> list[str]:
    """What a run did (or, dry, would do), one line per kind of action."""
    dry = report.dry_run
    margin = format_duration(report.safety_margin)
    lines = []
    if report.deleted:
        verb = "would delete" if dry else "deleted"
        lines.append(
            f"{verb} {len(report.deleted)} pack(s), {_size(report.deleted)}, "
            f"marked at least {margin} ago and still needed by no snapshot"
        )
    if report.reindexed:
        verb = "would re-index" if dry else "re-indexed"
        lines.append(f"{verb} {len(report.reindexed)} marked pack(s) that a snapshot needs again")
    if report.unmarked:
        lines.append(
            f"{len(report.unmarked)} marked pack(s) are listed by an index again: left in place"
        )
    if report.repacked:
        verb = "would repack" if dry else "repacked"
        into = (
            "" if dry else f", into {len(report.new_packs)} new pack(s), {_size(report.new_packs)}"
        )
        lines.append(
            f"{verb} {len(report.repacked)} pack(s), {_size(report.repacked)}, whose needed "
            f"blobs fill less than {report.repack_below:g}%{into}; the old ones are marked"
        )
    compacted = report.journal.get("compacted") or []
    if compacted:
        verb = "would compact" if dry else "compacted"
        lines.append(
            f"{verb} {len(compacted)} journal batch(es), "
            f"{format_bytes(int(report.journal.get('compacted_bytes', 0)))}: older than "
            "retention and covered by a kept full snapshot"
        )
    if report.journal.get("damaged"):
        lines.append(
            f"journal: {len(report.journal['damaged'])} damaged batch object(s); run "
            "'cleancut journal verify NAME'"
        )
    if report.marked:
        verb = "would mark" if dry else "marked"
        lines.append(
            f"{verb} {len(report.marked)} unused pack(s), {_size(report.marked)}: out of the "
            f"index now, deleted by a prune run at least {margin} later"
        )
    if report.marked_unindexed:
        verb = "would mark" if dry else "marked"
        lines.append(
            f"{verb} {len(report.marked_unindexed)} pack(s) that no index lists, "
            f"{_size(report.marked_unindexed)}: deleted by a prune run at least {margin} later"
        )
    if report.waiting:
        lines.append(
            f"{len(report.waiting)} marked pack(s), {_size(report.waiting)}, wait for their "
            f"safety margin"
        )
    if report.too_new:
        lines.append(
            f"{len(report.too_new)} unused or sparse pack(s), {_size(report.too_new)}, are in "
            f"index segments first seen less than {margin} ago: a backup may still be writing them"
        )
    if report.segments_seen:
        verb = "would note" if dry else "noted"
        lines.append(f"{verb} {report.segments_seen} index segment(s) seen for the first time")
    if report.reserve_used:
        lines.append(
            f"the repository's filesystem was full: released the "
            f"{format_bytes(report.reserve_used)} prune reserve to run (no repack); "
            f"reserve now {format_bytes(report.reserve_bytes)}"
        )
    if not lines:
        lines.append(f"nothing to prune ({report.snapshots} snapshots)")
    if report.next_run:
        lines.append(f"run prune again from {report.next_run} to go on")
    return lines


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be marked, repacked and deleted.")
@click.option(
    "--safety-margin",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long a mark waits before the sweep deletes; longer than any backup takes.",
)
@click.option(
    "--repack-below",
    type=click.FloatRange(0, 100),
    default=DEFAULT_REPACK_BELOW,
    show_default=True,
    metavar="PCT",
    help="Repack packs whose needed blobs fill less than this percentage (0: never).",
)
@common_options
def command(common: Common, dry_run: bool, safety_margin: str, repack_below: float) -> None:
    """Delete the packs no snapshot needs, in two phases (mark, then sweep after a margin)."""
    margin = parse_margin(safety_margin)
    repo = common.open()
    try:
        report = prune(
            repo, margin, repack_below, dry_run, journal_retention_for(common.config, repo)
        )
    finally:
        repo.close()
    if common.json:
        common.emit(report.to_json())
        return
    for line in report_lines(report):
        common.say(line)
