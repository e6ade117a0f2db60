"""`cleancut find`: the snapshots that hold paths matching a glob pattern, and the paths
(browse/find.py). Names are escaped as paths are shown everywhere; --json keeps them."""

from __future__ import annotations

import stat
import time

import click

from cleancut.browse.find import FindOutcome, find
from cleancut.cli.context import Common, common_options
from cleancut.pathtext import shown_path
from cleancut.repository.tree import DIR, SYMLINK


@click.command("find")
@click.argument("pattern")
@click.option("--name", help="Search only this source's snapshots.")
@click.option(
    "--snapshot",
    "refs",
    multiple=True,
    metavar="ID",
    help="Search only this snapshot (an id, a prefix or 'latest'; repeatable).",
)
@click.option("--ignore-case", "-i", is_flag=True, help="Match regardless of case.")
@common_options
def command(
    common: Common, pattern: str, name: str | None, refs: tuple[str, ...], ignore_case: bool
) -> FindOutcome:
    """List the snapshots holding paths that match PATTERN, and those paths.

    A PATTERN without '/' matches entry names ('*.md'); with '/', whole paths in the
    snapshot ('workspace/memory/*'). '*' and '?' also match '/'.
    """
    repo = common.open()
    try:
        if refs:
            pool = [repo.find_snapshot(ref, name) for ref in refs]
        else:
            pool = [s for s in repo.snapshots() if name is None or s.name == name]
        outcome = find(repo, pattern, pool, ignore_case)
    finally:
        repo.close()
    for _, line in outcome.errors:
        click.echo(f"cleancut: {line}", err=True)
    if common.json:
        common.emit(outcome.to_json())
        return outcome
    for found in outcome.found:
        snap = found.snapshot
        click.echo(f"snapshot {snap.id[:12]} of {shown_path(snap.name)} at {snap.time}:")
        for path, node in found.matches:
            kind = {DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}.get(node.type, stat.S_IFREG)
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(node.mtime_ns / 1e9))
            mode = stat.filemode(kind | node.mode)
            click.echo(f"  {mode} {node.size:>12} {when} {shown_path(path)}")
    if not outcome.found:
        common.say(f"no path matches {shown_path(pattern)} in {outcome.searched} snapshot(s)")
    return outcome
