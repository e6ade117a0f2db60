"""`cleancut check`: verify the repository's structure and, with --read-data, its data.

Exit 4 when anything is damaged, with one line naming the damaged packs, snapshots,
key slots and records.
"""

from __future__ import annotations

import click

from cleancut.checker.check import Checker, CheckReport
from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import progress_line


@click.command("check")
@click.option("--read-data", is_flag=True, help="Also read, decrypt and re-hash every blob.")
@click.option(
    "--read-data-subset",
    type=click.FloatRange(0, 100, min_open=True),
    metavar="PERCENT",
    help="Read only this percentage of packs, chosen at random.",
)
@common_options
def command(common: Common, read_data: bool, read_data_subset: float | None) -> CheckReport:
    """Verify the repository's structure (and, with --read-data, its data)."""
    percent = 100.0 if read_data else (read_data_subset or 0.0)
    repo = common.open()
    try:
        read = [0, 0]

        def on_pack(size: int) -> None:
            read[0] += 1
            read[1] += size

        checker = Checker(repo, on_pack)
        with progress_line(common.show_progress and percent > 0, lambda: (read[0], read[1], 0, 0)):
            report = checker.run(percent)
    finally:
        repo.close()
    if common.json:
        common.emit(report.to_json())
    else:
        for note in report.notes:
            common.say(f"note: {note}")
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
        if report.ok:
            extra = f", {report.packs_read} packs read" if percent else ""
            common.say(f"no errors: {report.snapshots} snapshots, {report.packs} packs{extra}")
    if not report.ok and not common.json:
        click.echo(
            f"cleancut: check found {len(report.errors)} error(s); damaged packs: "
            f"{', '.join(p[:12] for p in report.damaged_packs) or 'none'}; damaged "
            f"snapshots: {', '.join(s[:12] for s in report.damaged_snapshots) or 'none'}"
            + _named("damaged key slots", report.damaged_keys)
            + _named("damaged records", report.damaged_records),
            err=True,
        )
    return report


def _named(what: str, ids: list[str]) -> str:
    return f"; {what}: {', '.join(i[:12] for i in ids)}" if ids else ""
