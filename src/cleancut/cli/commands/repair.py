"""`cleancut repair index|packs`: rebuild the index, or replace the packs `check` found damaged.

Both run under the repository's lock (checker/repair.py) and exit 4 while damage
remains that they could not repair.
"""

from __future__ import annotations

from pathlib import Path

import click

from cleancut.checker.heal import HealReport
from cleancut.checker.repair import ReindexOutcome, repair_damaged_packs, repair_index
from cleancut.cli.context import Common, common_options


@click.group("repair")
def command() -> None:
    """Repair the index, or replace damaged packs (heals the snapshots that use them)."""


@command.command("index")
@common_options
def repair_index_command(common: Common) -> ReindexOutcome:
    """Rebuild the local SQLite index from the repository.

    Index segments are read again; packs that no readable segment covers are
    indexed from their own headers into a new segment, and damaged segments
    are removed.
    """
    repo = common.open()
    try:
        outcome = repair_index(repo)
    finally:
        repo.close()
    for warning in repo.warnings:
        click.echo(f"warning: {warning}", err=True)
    result, counts = outcome.result, outcome.counts
    if common.json:
        common.emit(outcome.to_json())
    else:
        common.say(
            f"index rebuilt: {counts['blobs']} blobs in {counts['packs']} packs; "
            f"{result['packs_reindexed']} packs indexed from their headers, "
            f"{result['damaged_segments_removed']} damaged segments removed"
        )
    if result["unreadable_packs"]:
        click.echo(
            f"cleancut: {result['unreadable_packs']} damaged pack(s) could not be indexed; "
            "run 'cleancut check --read-data' to see which snapshots depend on them",
            err=True,
        )
    return outcome


@command.command("packs")
@click.option(
    "--from",
    "sources",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory to read lost content from again (repeatable): the source backed up.",
)
@common_options
def repair_packs_command(common: Common, sources: tuple[Path, ...]) -> HealReport:
    """Replace the packs 'check' found damaged.

    Every blob of a damaged pack that has no intact copy elsewhere is stored
    again: from the damaged pack when it still verifies, else from the files
    under --from whose content has the same blob ID. A pack fully replaced is
    taken out of the index and deleted; its snapshots then restore. Run
    'cleancut check --read-data' first: it records what is damaged.
    """
    repo = common.open()
    try:
        report = repair_damaged_packs(repo, list(sources))
    finally:
        repo.close()
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if common.json:
        common.emit(report.to_json())
    else:
        common.say(
            f"{len(report.replaced)} damaged pack(s) replaced: {report.salvaged} blob(s) "
            f"salvaged, {report.from_source} read again from the source"
        )
    if report.remaining:
        click.echo(
            f"cleancut: {len(report.remaining)} damaged pack(s) remain "
            f"({', '.join(p[:12] for p in report.remaining)}): {len(report.lost)} blob(s) were "
            "found nowhere; give the source with --from, or forget the snapshots that need them",
            err=True,
        )
    return report
