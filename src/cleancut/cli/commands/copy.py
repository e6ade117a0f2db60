"""`cleancut copy`: copy snapshots to another repository, re-encrypted under its keys.

The destination's passphrase is chosen by replication/destination_key.py; the copy
is replication/copy.py's. The source's passphrase is asked for once, since the
destination's defaults to it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from cleancut.cli.context import Common, common_options
from cleancut.cli.passphrase import read_passphrase
from cleancut.cli.progress import format_bytes
from cleancut.clock import parse_time
from cleancut.replication.copy import (
    CopyReport,
    open_destination,
    read_destination_config,
    run_copy,
)
from cleancut.replication.destination_key import destination_passphrase


@click.command("copy")
@click.option(
    "--from",
    "from_location",
    metavar="REPO",
    help="The repository to copy from (default: --repo, CLEANCUT_REPO or the config file).",
)
@click.option(
    "--to",
    "to_location",
    metavar="REPO",
    help="The repository to copy to (default: [replication] to in the config file).",
)
@click.option("--source", help="Only snapshots of this source (and their ancestors).")
@click.option(
    "--since",
    metavar="TIME",
    help="Only snapshots taken at or after TIME (ISO 8601, or like '2h ago'), and their ancestors.",
)
@click.option(
    "--to-password-file",
    envvar="CLEANCUT_TO_PASSWORD_FILE",
    type=click.Path(dir_okay=False),
    help="Read the destination's passphrase from this file.",
)
@click.option(
    "--to-password-command",
    envvar="CLEANCUT_TO_PASSWORD_COMMAND",
    help="Run this command and read the destination's passphrase from its output.",
)
@common_options
def command(
    common: Common,
    from_location: str | None,
    to_location: str | None,
    source: str | None,
    since: str | None,
    to_password_file: str | None,
    to_password_command: str | None,
) -> None:
    """Copy snapshots to another repository, re-encrypted under its keys.

    Chains are copied whole: an incremental arrives only with its ancestors. What
    the destination already holds is skipped, so running it again copies nothing,
    and a copy that was interrupted finishes. The destination's passphrase comes
    from --to-password-file, --to-password-command, [replication] password_file or
    CLEANCUT_TO_PASSWORD, else it is the source's.
    """
    moment = parse_time(since) if since else None
    replication = common.config.replication
    to = to_location or (replication.to if replication else None)
    if not to:
        raise click.UsageError("give --to REPO (or set [replication] to in the config file)")
    common = _AskOnce.of(common, from_location)
    read_destination_config(to)  # "not a repository" before asking for passphrases
    src = common.open()
    try:
        to_passphrase = destination_passphrase(
            to_password_file,
            to_password_command,
            replication,
            bool(to_location),
            read_passphrase,
            common.passphrase,
        )
        cache_root = Path(common.cache_dir) if common.cache_dir else None
        dest = open_destination(to, to_passphrase, cache_root, common.backend(to))
        try:
            report = run_copy(src, dest, to, source, moment)
        finally:
            dest.close()
    finally:
        src.close()
    if common.json:
        common.emit(report.to_json())
    else:
        _print(common, report, to)


@dataclasses.dataclass
class _AskOnce(Common):
    """Common that reads the source's passphrase once: the destination's defaults to it,
    and a prompt or a password command must not run twice."""

    remembered: str | None = None

    @classmethod
    def of(cls, common: Common, repo: str | None) -> _AskOnce:
        fields = {f.name: getattr(common, f.name) for f in dataclasses.fields(common)}
        return cls(**fields | ({"repo": repo} if repo else {}))

    def passphrase(self, confirm: bool = False) -> str:
        if self.remembered is None:
            self.remembered = super().passphrase(confirm)
        return self.remembered


def _print(common: Common, report: CopyReport, to: str) -> None:
    for c in report.copied:
        common.say(
            f"  copied {c.source_id[:12]} -> {c.dest_id[:12]}  {c.name}  {c.kind} seq {c.seq}  "
            f"{c.time[:19].replace('T', ' ')}"
        )
    common.say(
        f"{len(report.copied)} snapshots copied to {to}, {report.skipped} already there; "
        f"{report.blobs_transferred} blobs, {report.bytes_uploaded} bytes transferred "
        f"({format_bytes(report.bytes_uploaded)}; {format_bytes(report.bytes_read)} read) "
        f"in {report.duration_s:.2f}s"
    )
