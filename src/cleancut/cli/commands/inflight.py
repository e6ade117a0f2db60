"""`cleancut inflight`: the external actions a snapshot holds in flight, with their keys.

A restored agent reconciles these by idempotency key instead of repeating them; the
list is restorer/inflight.py's, the same one `restore` writes beside its target.
"""

from __future__ import annotations

import click

from cleancut.cli.context import Common, common_options
from cleancut.restorer.inflight import inflight_document


@click.command("inflight")
@click.argument("snapshot", default="latest")
@click.option("--name", help="With 'latest': the snapshot of this source.")
@common_options
def command(common: Common, snapshot: str, name: str | None) -> None:
    """External actions still in flight when SNAPSHOT was captured, with their keys.

    A restored agent must reconcile these (by idempotency key) rather than repeat them.
    """
    repo = common.open()
    try:
        snap = repo.find_snapshot(snapshot, name)
    finally:
        repo.close()
    doc = inflight_document(snap)
    if common.json:
        common.emit(doc)
        return
    if not doc["inflight"]:
        common.say(f"snapshot {snap.id[:12]} ({snap.consistency}): no action in flight")
        return
    common.say(f"snapshot {snap.id[:12]} ({snap.consistency}): {len(doc['inflight'])} in flight")
    for action in doc["inflight"]:
        common.say(_line(action))


def _line(action: dict[str, object]) -> str:
    return (
        f"{action.get('key')}  {action.get('kind')}  {action.get('state')}  "
        f"since {action.get('since')}"
    )
