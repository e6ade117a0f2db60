"""`cleancut unlock`: remove stale locks (left by a prune or repair that crashed).

Expired locks, and at once those whose holder no longer runs on this host; a live
lock only with --force. A live lock left in place ends with exit 12.
"""

from __future__ import annotations

import click

from cleancut import clock
from cleancut.cli.context import Common, common_options
from cleancut.errors import RepositoryLocked
from cleancut.prune.prune import Lock


def _json(lock: Lock) -> dict[str, object]:
    return {
        "name": lock.name,
        "operation": lock.operation,
        "host": lock.host,
        "pid": lock.pid,
        "user": lock.user,
        "created": lock.created,
        "expires": lock.expires,
        "readable": lock.readable,
    }


@click.command("unlock")
@click.option(
    "--force", is_flag=True, help="Also remove live locks: only when their holder is surely gone."
)
@common_options
def command(common: Common, force: bool) -> None:
    """Remove stale locks (left by a prune that crashed or was killed): expired ones,
    and at once those whose holder no longer runs on this host."""
    repo = common.open()
    try:
        now = clock.now()
        result = repo.remove_locks(now, force)
    finally:
        repo.close()
    if common.json:
        common.emit(
            {
                "removed": [_json(lock) for lock in result.removed],
                "forced": [_json(lock) for lock in result.forced],
                "kept": [_json(lock) for lock in result.kept],
            }
        )
    else:
        for lock in result.removed:
            common.say(f"removed stale lock {lock.name}: {lock.holder}, {lock.stale_reason(now)}")
        for lock in result.forced:
            what = lock.holder if lock.readable else "an unreadable lock"
            click.echo(
                f"warning: removed live lock {lock.name} ({what}); if that prune still runs, "
                "it stops before its next deletion",
                err=True,
            )
        if not (result.removed or result.forced or result.kept):
            common.say("no locks")
    if result.kept:
        lock = result.kept[0]
        held = (
            f"held by {lock.holder} since {lock.created}, until {lock.expires}"
            if lock.readable
            else "unreadable"
        )
        raise RepositoryLocked(
            f"live lock {lock.name} not removed: {held}; pass --force only if that process is gone"
        )
