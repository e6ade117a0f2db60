"""`cleancut mount`: browse every snapshot as a read-only filesystem (browse/mount.py).

Runs in the foreground until Ctrl-C, SIGTERM or `fusermount3 -u MOUNTPOINT`; then
says what it read from the repository. With --background it returns once mounted
(browse/background.py). Exit 20 when it cannot mount.
"""

from __future__ import annotations

from pathlib import Path

import click

from cleancut.browse import background as bg
from cleancut.browse.mount import MountOutcome, mount
from cleancut.cli.context import Common, common_options
from cleancut.cli.progress import format_bytes
from cleancut.pathtext import shown_path


@click.command("mount")
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option(
    "--background",
    is_flag=True,
    help="Return once mounted; the mount goes on in a process of its own until "
    "'fusermount3 -u MOUNTPOINT' (or SIGTERM to it).",
)
@common_options
def command(common: Common, mountpoint: Path, background: bool) -> MountOutcome | bg.Detached:
    """Mount the repository's snapshots read-only at MOUNTPOINT (an empty directory).

    The tree is snapshots/<source>/<time>/... with snapshots/<source>/latest, a
    symlink to the source's newest snapshot. Stays in the foreground; Ctrl-C,
    SIGTERM or 'fusermount3 -u MOUNTPOINT' unmounts it.
    """
    child = None
    if background:
        forked = bg.fork()
        if isinstance(forked, bg.Detached):
            return _detached(common, forked, mountpoint)
        child = forked
    repo = common.open()

    def ready(where: Path) -> None:
        if child is not None:  # the parent says where it is mounted
            child.ready()
            return
        click.echo(
            f"cleancut: snapshots mounted at {shown_path(str(where))}; Ctrl-C (or "
            f"'fusermount3 -u {shown_path(str(where))}') unmounts",
            err=True,
        )

    def problem(line: str) -> None:
        click.echo(f"cleancut: {line}", err=True)

    try:
        outcome = mount(repo, mountpoint, ready, problem)
    finally:
        repo.close()
    if common.json:
        common.emit(outcome.to_json())
    else:
        read = outcome.stats
        click.echo(
            f"cleancut: unmounted {shown_path(outcome.mountpoint)}; read {read.blobs_fetched} "
            f"data blobs ({format_bytes(read.bytes_fetched)}) from the repository, "
            f"{read.cache_hits} reads from the cache, {outcome.replays} snapshot(s) replayed",
            err=True,
        )
    return outcome


def _detached(common: Common, detached: bg.Detached, mountpoint: Path) -> bg.Detached:
    """In the parent: the child mounted (its process named), or failed (its line is
    printed already; its code is returned)."""
    detached.mountpoint = str(mountpoint.absolute())
    if detached.mounted:
        if common.json:
            common.emit(detached.to_json())
        else:
            common.say(
                f"mounted at {shown_path(detached.mountpoint)} by process {detached.pid}; "
                f"'fusermount3 -u {shown_path(detached.mountpoint)}' unmounts"
            )
    return detached
