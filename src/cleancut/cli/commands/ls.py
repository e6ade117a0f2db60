"""`cleancut ls`: the files of a snapshot (below a path), one entry a line.

Names are escaped as paths are shown everywhere (pathtext.py); --json keeps them exact.
"""

from __future__ import annotations

import stat
import time

import click

from cleancut.cli.context import Common, common_options
from cleancut.pathtext import shown_path
from cleancut.repository.tree import DIR, SYMLINK
from cleancut.repository.views import list_snapshot


@click.command("ls")
@click.argument("snapshot")
@click.argument("path", required=False, default="")
@common_options
def command(common: Common, snapshot: str, path: str) -> None:
    """List the files of a snapshot (below PATH).

    Control characters, backslashes and bytes that are not UTF-8 in names are
    escaped (\\n, \\t, \\\\, \\xNN), so each entry is one line; --json keeps the exact names.
    """
    repo = common.open()
    try:
        snap = repo.find_snapshot(snapshot)
        entries = list(list_snapshot(repo, snap, path))
    finally:
        repo.close()
    if common.json:
        common.emit(
            [
                {
                    "path": p,
                    "type": n.type,
                    "mode": oct(n.mode),
                    "size": n.size,
                    "mtime_ns": n.mtime_ns,
                    "uid": n.uid,
                    "gid": n.gid,
                    **({"target": n.target} if n.type == SYMLINK else {}),
                }
                for p, n in entries
            ]
        )
        return
    for p, n in entries:
        kind = {DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}.get(n.type, stat.S_IFREG)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n.mtime_ns / 1e9))
        suffix = f" -> {shown_path(n.target or '')}" if n.type == SYMLINK else ""
        click.echo(f"{stat.filemode(kind | n.mode)} {n.size:>12} {when} {shown_path(p)}{suffix}")
