"""`cleancut journal ship|ls|verify`: an agent's journal in the repository.

`ship` stores the records after the last shipped one as a batch (exit 17, after
storing what was good, when the journal is damaged or forked); `ls` lists the
batches of each lineage; `verify` reads every batch back (exit 17 on damage).
"""

from __future__ import annotations

from pathlib import Path

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes
from cleancut.journal.repo.ship import ShipResult, ship_what_is_good
from cleancut.journal.repo.store import load_catalog, seq_range
from cleancut.journal.repo.verify import JournalVerifyReport, verify_journal


@click.group("journal")
def command() -> None:
    """Ship an agent's journal into the repository; list and verify what is there."""


@command.command("ship")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The agent's journal directory.",
)
@click.option(
    "--upto",
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Ship no record past SEQ (the journal_seq the agent acknowledged).",
)
@common_options
def ship_command(common: Common, name: str, directory: Path, upto: int | None) -> ShipResult:
    """Store the journal's records after the last shipped one of source NAME, as one batch."""
    repo = common.open()
    try:
        result = ship_what_is_good(repo, name, directory, upto)
    finally:
        repo.close()
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if common.json:
        common.emit(result.to_json())
    else:
        common.say(_ship_line(result))
    if result.error is not None:
        click.echo(f"cleancut: {result.error}", err=True)
    return result


def _ship_line(result: ShipResult) -> str:
    if not result.batches:
        where = f"; {result.directory}/shipped says {result.shipped_seq}"
        return f"nothing new to ship for {result.name}" + (
            where if result.shipped_seq is not None else ""
        )
    assert result.first_seq is not None and result.last_seq is not None
    lineage = " (a new lineage)" if result.new_lineage else ""
    return (
        f"shipped records {seq_range(result.first_seq, result.last_seq)} of {result.name}: "
        f"{result.records} records, {format_bytes(result.bytes)} "
        f"({format_bytes(result.bytes_added)} added) in {len(result.batches)} batch(es)"
        f"{lineage}"
    )


@command.command("ls")
@click.argument("name")
@common_options
def ls_command(common: Common, name: str) -> None:
    """List the journal batches of source NAME: records, times, size."""
    repo = common.open()
    try:
        catalog = load_catalog(repo, name)
    finally:
        repo.close()
    if common.json:
        common.emit(
            {
                "name": name,
                "lineages": [
                    {
                        "lineage": lin.id,
                        "since": lin.since or None,
                        "base_seq": lin.base_seq,
                        "base_snapshot": lin.base_snapshot or None,
                        "compacted_upto": catalog.compacted.get(lin.id),
                        "batches": [
                            {"id": b.id, **b.to_record()}
                            for b in sorted(lin.batches, key=lambda b: b.first_seq)
                        ],
                    }
                    for lin in catalog.lineages
                ],
                "damaged": catalog.damaged,
            }
        )
        return
    if not catalog.lineages:
        common.say(f"no journal batches of {name}")
    for lin in catalog.lineages:
        since = f", snapshots since {lin.since}" if lin.since else ""
        common.say(
            f"lineage {lin.id[:12]} (after record {lin.base_seq}{since}): records "
            f"{seq_range(catalog.start_of(lin), lin.last_seq)}"
        )
        for b in lin.batches:
            common.say(
                f"  {b.id[:12]}  {b.range:>15}  {b.first_time[:19]}  {b.last_time[:19]}  "
                f"{b.records:>6} records  {format_bytes(b.bytes):>10}"
            )
    for oid in catalog.damaged:
        click.echo(f"warning: journal/{oid[:12]} cannot be read (damaged)", err=True)


@command.command("verify")
@click.argument("name")
@common_options
def verify_command(common: Common, name: str) -> JournalVerifyReport:
    """Verify source NAME's journal batches: one chain per lineage, every batch read back."""
    repo = common.open()
    try:
        report = verify_journal(repo, name, read_data=True)
    finally:
        repo.close()
    if common.json:
        common.emit(report.to_json())
    else:
        for note in report.notes:
            common.say(f"note: {note}")
        for problem in report.problems:
            click.echo(f"error: {problem}", err=True)
        if report.ok:
            common.say(
                f"journal of {name} verified: {report.batches} batches, {report.records} "
                f"records, {format_bytes(report.bytes)}"
            )
    if not report.ok:
        click.echo(
            f"cleancut: the journal of {name} is damaged: {len(report.problems)} problem(s)",
            err=True,
        )
    return report
