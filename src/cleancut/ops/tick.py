"""`tick`: do whatever is due for each configured source, then return.

Due work is read from the repository itself (the newest snapshot, the last
restore test, the last prune), so a tick right after another finds nothing to
do, and a tick from a fresh host does what the schedule says. A per-source
lock file (flock, released by the kernel if the process dies) keeps two ticks
from working on one source at once on a host.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cleancut import clock
from cleancut.archiver.backup import BackupOptions, BackupResult
from cleancut.archiver.policy import latest_of
from cleancut.errors import CleancutError, ExitCode, RepositoryLocked, UsageError
from cleancut.journal.repo.ship import ship
from cleancut.journal.repo.store import batches
from cleancut.replication.copy import copy_due, scheduled_copy
from cleancut.repository.records import RESTORE_TEST, list_records
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile, SourceConfig
from cleancut.settings.effective import effective
from cleancut.settings.profiles import Profile

from .maintenance import forget_due, prune_due, run_prune
from .restore_test import run_restore_test
from .runner import run_backup

# How tick takes one source's backup. The store's own walks the source directly; the
# command line passes one that takes hot backups of sources with an agent (agent/
# knows agents, the store does not).
BackupFn = Callable[[Repository, SourceConfig, BackupOptions, Profile], BackupResult]
# The journal record the agent has acknowledged as durable (its `flush` reply), or None
# when it cannot be asked: records up to it are safe to ship.
AckFn = Callable[[SourceConfig], int | None]


def no_ack(src: SourceConfig) -> int | None:
    return None


def plain_backup(
    repo: Repository, src: SourceConfig, options: BackupOptions, profile: Profile
) -> BackupResult:
    return run_backup(repo, src.source, options)


@dataclass
class Action:
    source: str
    what: str  # backup | journal | restore-test | forget | copy | prune | skip
    ok: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "what": self.what, "ok": self.ok, "detail": self.detail}


@dataclass
class TickOutcome:
    """What one tick did, in order; it failed (exit 1) if any action did."""

    actions: list[Action]

    @property
    def exit_code(self) -> int:
        return ExitCode.FATAL if any(not a.ok for a in self.actions) else ExitCode.OK

    def to_json(self) -> list[dict[str, object]]:
        return [a.to_json() for a in self.actions]


def tick(
    repo: Repository,
    config: ConfigFile,
    names: list[str] | None = None,
    lock_dir: Path | None = None,
    backup: BackupFn = plain_backup,
    replica_passphrase: Callable[[], str] | None = None,
    journal_ack: AckFn = no_ack,
) -> TickOutcome:
    """replica_passphrase: how to get the [replication] destination's passphrase (default:
    the file's password_file, CLEANCUT_TO_PASSWORD, then the source's own)."""
    if config.path is None or not config.sources:
        raise UsageError("tick needs a config file with at least one [sources.NAME] table")
    wanted = names or sorted(config.sources)
    unknown = [n for n in wanted if n not in config.sources]
    if unknown:
        raise UsageError(f"{config.path}: no source {', '.join(map(repr, unknown))}")
    locks = lock_dir or repo.local_dir
    actions: list[Action] = []
    for name in wanted:
        with source_lock(locks, name) as held:
            if not held:
                actions.append(Action(name, "skip", True, "another tick is working on it"))
                continue
            src = config.sources[name]
            # The source's settings, resolved once for everything this tick does for it.
            profile = effective(config, src.name, repo.config.profile, {}).profile
            if src.journal is not None:
                actions += _ship_journal(repo, profile, src, journal_ack)
            actions += _tick_source(repo, config, profile, src, backup)
    # After the backups, so the snapshot just taken goes offsite in the same tick.
    actions += _replicate(repo, config, locks, replica_passphrase)
    if prune_due(repo, config, clock.now()):
        with source_lock(locks, "*prune*") as held:
            if held:
                try:
                    actions.append(Action("*", "prune", True, run_prune(repo, config)))
                except RepositoryLocked as exc:
                    actions.append(Action("*", "skip", True, f"prune: {exc}"))
                except CleancutError as exc:
                    actions.append(Action("*", "prune", False, str(exc)))
    return TickOutcome(actions)


def _replicate(
    repo: Repository,
    config: ConfigFile,
    locks: Path,
    replica_passphrase: Callable[[], str] | None,
) -> list[Action]:
    """The [replication] copy, when the interval since the last successful one has passed."""
    if config.replication is None or not copy_due(repo, config.replication, clock.now()):
        return []
    with source_lock(locks, "*copy*") as held:
        if not held:
            return [Action("*", "skip", True, "copy: another tick is copying")]
        try:
            passphrase = replica_passphrase() if replica_passphrase else None
            return [Action("*", "copy", True, scheduled_copy(repo, config, passphrase))]
        except CleancutError as exc:
            return [Action("*", "copy", False, str(exc))]


def _ship_journal(
    repo: Repository, profile: Profile, src: SourceConfig, journal_ack: AckFn
) -> list[Action]:
    """Ship the source's journal when the profile's incremental sync interval has passed
    since the last batch (before the backup: a journal fallback then has the newest)."""
    assert src.journal is not None
    shipped = batches(repo, src.name)
    newest = max((b.shipped for b in shipped), default=None)  # across lineages
    if newest and clock.seconds_since(newest, clock.now()) < profile.incremental_sync_interval:
        return []
    try:
        result = ship(repo, src.name, src.journal, upto_seq=journal_ack(src))
    except CleancutError as exc:
        return [Action(src.name, "journal", False, str(exc))]
    if not result.batches:
        return [Action(src.name, "journal", True, "nothing new to ship")]
    detail = (
        f"shipped records {result.batches[0].first_seq}..{result.batches[-1].last_seq} "
        f"({result.records} records)"
    )
    if result.warnings:
        detail += f"; {len(result.warnings)} warning(s): {result.warnings[0]}"
    return [Action(src.name, "journal", True, detail)]


def _tick_source(
    repo: Repository, config: ConfigFile, profile: Profile, src: SourceConfig, backup: BackupFn
) -> list[Action]:
    now = clock.now()
    actions: list[Action] = []
    latest = latest_of(repo.snapshots(), src.name)
    age = clock.seconds_since(latest.time, now) if latest else None
    if age is None or age >= profile.checkpoint_cadence:
        options = BackupOptions(
            name=src.name,
            tags=list(src.tags),
            excludes=list(src.exclude),
            max_full_age=profile.max_full_age,
        )
        try:
            result = backup(repo, src, options, profile)
            snap = result.snapshot
            detail = f"{snap.kind} {snap.id[:12]} seq {snap.seq} ({snap.reason})"
            if result.warnings:
                # The first one names what matters most (a quiesce miss, when there was one).
                detail += f"; {len(result.warnings)} warning(s): {result.warnings[0]}"
            actions.append(Action(src.name, "backup", True, detail))
        except CleancutError as exc:
            actions.append(Action(src.name, "backup", False, str(exc)))
    tests = [r for r in list_records(repo, RESTORE_TEST) if r.get("name") == src.name]
    last_test = clock.seconds_since(tests[-1]["time"], now) if tests else None
    latest = latest_of(repo.snapshots(), src.name)
    if latest is not None and (last_test is None or last_test >= profile.restore_test_interval):
        try:
            result_t = run_restore_test(
                repo, repo.load_snapshot(latest.id), None, None, rules=src.validate
            )
            failed = ", ".join(result_t.failed_steps)
            detail = f"{latest.id[:12]}: " + ("passed" if result_t.passed else f"failed ({failed})")
            actions.append(Action(src.name, "restore-test", result_t.passed, detail))
        except CleancutError as exc:
            actions.append(Action(src.name, "restore-test", False, str(exc)))
    try:
        gone = forget_due(repo, config, src.name, now, profile)
        if gone:
            actions.append(Action(src.name, "forget", True, f"{len(gone)} snapshot(s) forgotten"))
    except CleancutError as exc:
        actions.append(Action(src.name, "forget", False, str(exc)))
    return actions


@contextmanager
def source_lock(directory: Path, name: str) -> Iterator[bool]:
    """Hold this host's lock for one source; yields False if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    fd = os.open(directory / f"tick-{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)
