"""One module per command; each parses, calls an engine, prints and returns its outcome.

Commands are loaded lazily (click's lazy-loading group pattern): `cleancut backup`
imports the backup command's module and what it needs, not the modules of twenty
other commands (rich, the S3 client, the hot-backup orchestrator...). `cleancut
--help` imports none: each command's one-line summary is kept in COMMANDS beside
its module, and tests/test_imports.py checks that every summary is the one its
command's docstring gives.
"""

from __future__ import annotations

import importlib

import click

# name -> (module in this package, attribute, summary: the first sentence of its docstring)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("init", "command", "Create a repository."),
    "backup": (
        "backup",
        "command",
        "Snapshot one directory: SOURCE is a path, or the name of a source in the config file.",
    ),
    "snapshots": ("snapshots", "command", "List snapshots."),
    "ls": ("ls", "command", "List the files of a snapshot (below PATH)."),
    "diff": ("diff", "command", "Show what changed from SNAP_A to SNAP_B."),
    "stats": (
        "stats",
        "command",
        "Sizes, deduplication and compression of the whole repository.",
    ),
    "restore": (
        "restore",
        "command",
        "Restore SNAPSHOT (an id, an id prefix, or 'latest') into --target.",
    ),
    "journal": (
        "journal",
        "command",
        "Ship an agent's journal into the repository; list and verify what is there.",
    ),
    "inflight": (
        "inflight",
        "command",
        "External actions still in flight when SNAPSHOT was captured, with their keys.",
    ),
    "restore-test": (
        "restore_test",
        "command",
        "Restore a snapshot into a sandbox, check it end to end, and record the result.",
    ),
    "check": (
        "check",
        "command",
        "Verify the repository's structure (and, with --read-data, its data).",
    ),
    "forget": (
        "forget",
        "command",
        "Forget snapshots that no keep rule (and no kept snapshot) needs, or the "
        "SNAPSHOT_IDs named; prune frees the space.",
    ),
    "prune": (
        "prune",
        "command",
        "Delete the packs no snapshot needs, in two phases (mark, then sweep after a margin).",
    ),
    "unlock": (
        "unlock",
        "command",
        "Remove stale locks (left by a prune that crashed or was killed): expired ones, "
        "and at once those whose holder no longer runs on this host.",
    ),
    "status": (
        "status",
        "command",
        "Health of each source: fulls, chains, restore tests, success rates, quiesce misses.",
    ),
    "key": ("key", "command", "Manage key slots (passphrases)."),
    "repair": (
        "repair",
        "command",
        "Repair the index, or replace damaged packs (heals the snapshots that use them).",
    ),
    "config": (
        "config",
        "command",
        "Inspect the configuration (profiles, config file, overrides).",
    ),
    "copy": (
        "copy",
        "command",
        "Copy snapshots to another repository, re-encrypted under its keys.",
    ),
    "tick": (
        "tick",
        "command",
        "Do what is due for each configured source: ship its journal, back up (hot when "
        "it names an agent), restore-test, forget; then copy ([replication]) and prune.",
    ),
    "completion": (
        "completion",
        "command",
        "Print the completion script for SHELL (bash, zsh or fish).",
    ),
    "mount": (
        "mount",
        "command",
        "Mount the repository's snapshots read-only at MOUNTPOINT (an empty directory).",
    ),
    "dump": (
        "dump",
        "command",
        "Write PATH of SNAPSHOT to stdout: a file as its bytes, a directory ('/' for the "
        "whole snapshot) or a symlink as a tar stream (modes, owners, times, symlinks kept).",
    ),
    "find": (
        "find",
        "command",
        "List the snapshots holding paths that match PATTERN, and those paths.",
    ),
    "daemon": (
        "tick",
        "daemon",
        "Run ticks in a loop, serve Prometheus metrics at /metrics and the status page at /.",
    ),
}


def load(name: str) -> click.Command:
    """The command `name`, its module imported now."""
    module, attribute, _ = COMMANDS[name]
    command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    assert isinstance(command, click.Command)
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported when run, and summarised without importing."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, summary_of(name).get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def summary_of(name: str) -> click.Command:
    """A stand-in command carrying only `name`'s summary (for the group's help)."""
    return click.Command(name, help=COMMANDS[name][2])
