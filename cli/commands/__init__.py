"""One module per command; each parses, calls the store, prints."""

from __future__ import annotations

import click

from . import backup, check, config, diff, init, key, ls, repair, restore, snapshots, stats


def register(group: click.Group) -> None:
    for module in (init, backup, snapshots, ls, diff, stats, restore, check, key, repair, config):
        group.add_command(module.command)
