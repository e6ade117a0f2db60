"""Three weeks of backup history for the status page tests, written with an injected clock.

Real backups of real workspaces (ops/runner.run_backup, which records each attempt),
real restore tests (ops/restore_test.run_restore_test, one of them failing its smoke
command), real failed attempts (a source directory that is gone): only the clock is
injected (CLEANCUT_NOW), and the capture record a hot backup would write (its pause)
is given to the archiver as the hot orchestrator gives it, since running an agent
for each of a hundred backups would not test the page any better.

Three sources end in the three states: `agent` ok, `research-agent` warn (its last
attempt failed: its workspace directory is gone; never restore-tested) and
`mail-agent` critical (the last three windows missed quiesce). The page's escaping of
markup in names and errors is tested on a page of its own (test_status_page.py), so
this history, which is also the documentation's screenshot, reads like an operator's.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cleancut.archiver.backup import BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.errors import CleancutError
from cleancut.ops.restore_test import run_restore_test
from cleancut.ops.runner import run_backup
from cleancut.repository.repository import Repository
from cleancut.testing.sample import make_workspace, mutate_workspace

START = datetime(2026, 11, 8, tzinfo=UTC)
END = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # "now" for the page
RESEARCH = "research-agent"
GONE = "research-workspace"  # the source directory that is gone (the warn's failure)


@dataclass
class Plan:
    """One source's schedule: a backup every `every`, and which windows go wrong."""

    name: str
    every: timedelta
    hot: bool  # hot backups record a pause
    fail_at: set[int]  # attempts that fail (the source directory is gone)
    miss_at: set[int]  # windows whose quiesce is missed (an unquiesced fallback)
    last_fails: bool = False


PLANS = [
    Plan("agent", timedelta(hours=8), True, {9, 31, 32}, {20, 44}),
    Plan(RESEARCH, timedelta(hours=24), False, {7}, set(), last_fails=True),
    Plan("mail-agent", timedelta(hours=12), True, {15}, {10}),
]
RESTORE_TESTS = {  # (source, day): smoke command; "false" makes the test fail
    ("agent", 6): None,
    ("agent", 13): "false",
    ("agent", 14): None,
    ("agent", 20): None,
    ("mail-agent", 7): None,
    ("mail-agent", 19): None,
}


def _pause_ms(i: int) -> float:
    """A plausible, deterministic pause: ~10 ms with a slow wave and a spike now and then."""
    return round(9.0 + 4.0 * math.sin(i / 3.0) + (23.0 if i % 13 == 7 else 0.0), 1)


def build(root: Path, repo_dir: Path, cache: Path, password: str) -> None:
    """Write the history into the (initialised) repository at `repo_dir`."""
    events: list[tuple[datetime, Plan, int]] = []
    for plan in PLANS:
        moment, i = START + timedelta(hours=1), 0
        while moment <= END - timedelta(hours=1):
            events.append((moment, plan, i))
            moment, i = moment + plan.every, i + 1
    last_index = {p.name: max(i for _, q, i in events if q is p) for p in PLANS}
    workspaces = {p.name: make_workspace(root / f"ws-{n}", seed=n) for n, p in enumerate(PLANS)}
    tested: set[tuple[str, int]] = set()
    with pytest.MonkeyPatch.context() as mp:
        repo = Repository.open(LocalBackend(repo_dir), password, cache)
        try:
            for moment, plan, i in sorted(events, key=lambda e: (e[0], e[1].name)):
                mp.setenv("CLEANCUT_NOW", iso(moment))
                last = i == last_index[plan.name]
                _one_backup(repo, plan, i, workspaces[plan.name], last, root)
                day = (moment - START).days
                smoke = RESTORE_TESTS.get((plan.name, day), "none")
                if smoke != "none" and (plan.name, day) not in tested:
                    tested.add((plan.name, day))
                    mp.setenv("CLEANCUT_NOW", iso(moment + timedelta(minutes=20)))
                    newest = max(
                        (s for s in repo.snapshots() if s.name == plan.name), key=lambda s: s.time
                    )
                    run_restore_test(repo, newest, root / "sandbox", smoke)
        finally:
            repo.close()


def _one_backup(repo: Repository, plan: Plan, i: int, ws: Path, last: bool, root: Path) -> None:
    mutate_workspace(ws, seed=i)
    missed = i in plan.miss_at or (plan.name == "mail-agent" and last) or _tail_miss(plan, i)
    capture = {} if missed or not plan.hot else {"mode": "flat", "pause_ms": _pause_ms(i)}
    options = BackupOptions(
        name=plan.name,
        consistency="unquiesced" if missed else ("quiesced" if plan.hot else "unquiesced"),
        capture=capture,
    )
    if i in plan.fail_at or (last and plan.last_fails):
        gone = root / GONE
        shutil.rmtree(gone, ignore_errors=True)
        try:
            run_backup(repo, gone, options)
        except (CleancutError, OSError):
            pass  # the attempt is recorded as failed; that is the point
        else:
            raise AssertionError("a backup of a missing directory worked")
        return
    run_backup(repo, ws, options, quiesce_missed=missed)


def _tail_miss(plan: Plan, i: int) -> bool:
    """mail-agent's last three windows all miss quiesce (the critical alert)."""
    if plan.name != "mail-agent":
        return False
    total = int((END - timedelta(hours=1) - START - timedelta(hours=1)) / plan.every)
    return i >= total - 2
