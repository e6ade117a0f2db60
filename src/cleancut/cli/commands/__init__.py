"""One module per command; each parses, calls an engine, prints and returns its outcome."""

from __future__ import annotations

import click

from . import (
    backup,
    check,
    completion,
    config,
    copy,
    diff,
    dump,
    find,
    forget,
    inflight,
    init,
    journal,
    key,
    ls,
    mount,
    prune,
    repair,
    restore,
    restore_test,
    snapshots,
    stats,
    status,
    tick,
    unlock,
)


def register(group: click.Group) -> None:
    for module in (
        init,
        backup,
        snapshots,
        ls,
        diff,
        stats,
        restore,
        journal,
        inflight,
        restore_test,
        check,
        forget,
        prune,
        unlock,
        status,
        key,
        repair,
        config,
        copy,
        tick,
        completion,
        mount,
        dump,
        find,
    ):
        group.add_command(module.command)
    group.add_command(tick.daemon)
