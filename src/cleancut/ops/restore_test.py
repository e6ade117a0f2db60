"""Restore tests: prove that a snapshot restores, byte for byte, into something usable.

A backup that has never been restored is a hope, not a backup (docs/architecture.md:
"proof every week that a restore from an incremental chain works"). A test
restores one snapshot into a throw-away sandbox by replaying its verified chain,
then checks the result from disk, independently of the code that wrote it:

    restore   the Restorer, as an operator would run it (its own blob checks included)
    verify    every path of the snapshot exists with the right type; every file,
              read back and re-chunked, gives exactly the blob ids and size recorded
              (ops/restore_verify.py)
    validate  the formats an agent depends on, by the source's `validate` rules:
              JSON parses, JSONL lines parse, SQLite passes `PRAGMA integrity_check`;
              a file the capture already found invalid does not fail it
              (ops/restore_validate.py)
    smoke     optional: the operator's own command, run against the sandbox
              (ops/restore_smoke.py)

This module picks the snapshot, runs the steps in order and records the result.

The result is written to the repository as a RESTORE_TEST record, so any host sees
it (`status`), and a snapshot that failed is never a parent again (policy reads
`records.failed_snapshots`). Problems of the host running the test (a full
sandbox disk) are raised instead of recorded: they say nothing about the snapshot.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut import clock
from cleancut.archiver.policy import latest_of
from cleancut.errors import CleancutError, ExitCode, NoSpace, SnapshotNotFound, UsageError
from cleancut.fsio.treewalk import remove_tree
from cleancut.repository.chain import snapshot_state
from cleancut.repository.records import RESTORE_TEST, list_records, write_record
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.verdicts import Verdicts
from cleancut.restorer.restore import Restorer
from cleancut.validation.rules import DEFAULT_RULES, Rules

from .restore_smoke import run_smoke
from .restore_validate import validate_restored
from .restore_verify import verify_tree

PICKS = ("latest", "random", "oldest-untested")
STEPS = ("restore", "verify", "validate", "smoke")
SANDBOX_PREFIX = "cleancut-restore-test-"
DEFAULT_SMOKE_TIMEOUT = 600.0
MAX_PROBLEMS = 50  # per step, in the record: enough to act on, bounded in size


@dataclass
class StepResult:
    name: str
    passed: bool
    detail: str
    duration_s: float = 0.0
    skipped: bool = False  # not run because an earlier step left nothing to check
    problems: list[str] = field(default_factory=list)
    # validate: files that fail now but that the capture found invalid already
    known_invalid: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 3),
        }
        if self.skipped:
            out["skipped"] = True
        if self.problems:
            out["problems"] = self.problems[:MAX_PROBLEMS]
            out["problems_total"] = len(self.problems)
        if self.known_invalid:
            out["invalid_at_capture"] = self.known_invalid[:MAX_PROBLEMS]
            out["invalid_at_capture_total"] = len(self.known_invalid)
        return out


@dataclass
class RestoreTestResult:
    snapshot: Snapshot
    steps: list[StepResult]
    rto_s: float  # how long the restore itself took: the recovery time objective, measured
    bytes: int
    files: int
    time: str
    sandbox: Path
    kept: bool
    record_id: str = ""

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    @property
    def failed_steps(self) -> list[str]:
        return [s.name for s in self.steps if not s.passed and not s.skipped]

    @property
    def skipped_steps(self) -> list[str]:
        return [s.name for s in self.steps if s.skipped]

    @property
    def exit_code(self) -> int:
        """0 only if every step passed, else 4."""
        return ExitCode.OK if self.passed else ExitCode.INTEGRITY

    def to_json(self) -> dict[str, Any]:
        """The record, and where it went: its id, the sandbox and whether it was kept."""
        return self.to_record() | {
            "record_id": self.record_id,
            "sandbox": str(self.sandbox),
            "kept": self.kept,
        }

    def to_record(self) -> dict[str, Any]:
        """The RESTORE_TEST record; `snapshot` and `passed` are what policy reads."""
        snap = self.snapshot
        return {
            "type": RESTORE_TEST,
            "time": self.time,
            "snapshot": snap.id,
            "name": snap.name,
            "kind": snap.kind,
            "chain": snap.chain,
            "seq": snap.seq,
            "snapshot_time": snap.time,
            "passed": self.passed,
            "steps": {step.name: step.to_json() for step in self.steps},
            "rto_s": round(self.rto_s, 3),
            "bytes": self.bytes,
            "files": self.files,
        }


# --- choosing the snapshot ---------------------------------------------------


def pick_snapshot(
    repo: Repository,
    source: str | None,
    pick: str = "latest",
    rng: random.Random | None = None,
) -> Snapshot:
    """The snapshot to test, read and authenticated from the repository.

    latest: the source's newest snapshot, i.e. the newest incremental of the current
    chain, whose restore replays the whole chain (the case that matters in a disaster).
    random: any of the source's snapshots. oldest-untested: the oldest one that no
    restore test has covered yet, so repeated runs walk the whole history.
    """
    if pick not in PICKS:
        raise UsageError(f"unknown pick {pick!r} (known: {', '.join(PICKS)})")
    snapshots = repo.snapshots()
    if source is None:
        names = sorted({s.name for s in snapshots})
        if not names:
            raise SnapshotNotFound("the repository holds no snapshot to test")
        if len(names) > 1:
            raise UsageError(
                f"the repository holds {len(names)} sources; pass --source "
                f"(one of: {', '.join(names)})"
            )
        source = names[0]
    pool = sorted((s for s in snapshots if s.name == source), key=lambda s: (s.time, s.seq, s.id))
    if not pool:
        raise SnapshotNotFound(f"the repository holds no snapshot of {source}")
    if pick == "latest":
        chosen = latest_of(pool, source)
        assert chosen is not None
    elif pick == "random":
        chosen = (rng or random.SystemRandom()).choice(pool)
    else:
        tested = {r.get("snapshot") for r in list_records(repo, RESTORE_TEST)}
        untested = [s for s in pool if s.id not in tested]
        if not untested:
            raise SnapshotNotFound(
                f"every snapshot of {source} has been restore-tested; use --pick latest"
            )
        chosen = untested[0]
    return repo.load_snapshot(chosen.id)


# --- the test ------------------------------------------------------------------


def run_restore_test(
    repo: Repository,
    snapshot: Snapshot,
    sandbox_root: Path | None,
    smoke_cmd: str | None,
    timeout: float = DEFAULT_SMOKE_TIMEOUT,
    *,
    keep: bool = False,
    record: bool = True,
    rules: Rules = DEFAULT_RULES,
) -> RestoreTestResult:
    """Restore `snapshot` into a fresh directory under `sandbox_root` (default: the system
    temp dir), check it, record the result (unless `record` is False) and remove the
    sandbox (unless `keep`). `timeout` bounds the smoke command, in seconds; `rules` are
    the source's `validate` rules."""
    started = clock.iso(clock.now())
    root = Path(sandbox_root) if sandbox_root else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    sandbox = Path(tempfile.mkdtemp(prefix=SANDBOX_PREFIX, dir=root))
    steps: list[StepResult] = []
    rto = 0.0
    files = nbytes = 0
    try:
        t0 = time.monotonic()
        restore_step, complete = _restore(repo, snapshot, sandbox)
        rto = restore_step.duration_s = time.monotonic() - t0
        steps.append(restore_step)
        if complete is not None:
            files, nbytes = complete
        checks = _Checks(smoke_cmd, timeout, rules)
        steps += _checks(repo, snapshot, sandbox, restore_step, complete, checks)
    finally:
        if not keep:
            remove_sandbox(sandbox)
    result = RestoreTestResult(snapshot, steps, rto, nbytes, files, started, sandbox, kept=keep)
    if record:
        result.record_id = write_record(repo, result.to_record())
    return result


@dataclass(frozen=True)
class _Checks:
    """What the steps after restore are given by the operator."""

    smoke_cmd: str | None
    timeout: float
    rules: Rules


def _checks(
    repo: Repository,
    snapshot: Snapshot,
    sandbox: Path,
    restore_step: StepResult,
    complete: tuple[int, int] | None,
    given: _Checks,
) -> list[StepResult]:
    """verify, validate and smoke, each skipped (and so not passed) when what it would
    check is not there: no tree at all, or for smoke, an incomplete one."""
    smoke_cmd, timeout = given.smoke_cmd, given.timeout
    wanted = ["verify", "validate"] + (["smoke"] if smoke_cmd else [])
    if complete is None:
        return [_skipped(name, "the restore produced no tree") for name in wanted]
    try:
        state = snapshot_state(repo, snapshot)
    except CleancutError as exc:
        return [_skipped(name, f"the snapshot's state is unreadable ({exc})") for name in wanted]
    verdicts = Verdicts.from_json(snapshot.validation)
    known: list[str] = []

    def validate() -> tuple[list[str], str]:
        problems, summary, invalid_before = validate_restored(
            state, sandbox, given.rules, verdicts
        )
        known.extend(invalid_before)
        return problems, summary

    steps = [
        _timed("verify", lambda: verify_tree(repo, state, sandbox)),
        _timed("validate", validate),
    ]
    steps[1].known_invalid = known
    if smoke_cmd and restore_step.passed:
        steps.append(_timed("smoke", lambda: run_smoke(smoke_cmd, sandbox, snapshot, timeout)))
    elif smoke_cmd:
        steps.append(_skipped("smoke", "the restore is incomplete"))
    return steps


def _skipped(name: str, why: str) -> StepResult:
    return StepResult(name, False, f"not run: {why}", skipped=True)


def _shown(problems: list[str]) -> str:
    more = len(problems) - 3
    return "; ".join(problems[:3]) + (f"; and {more} more" if more > 0 else "")


def _timed(name: str, check: Callable[[], tuple[list[str], str]]) -> StepResult:
    """Run one check; it returns (problems, summary). No problem means passed."""
    t0 = time.monotonic()
    problems, summary = check()
    elapsed = time.monotonic() - t0
    if problems:
        return StepResult(name, False, f"{summary}: {_shown(problems)}", elapsed, problems=problems)
    return StepResult(name, True, summary, elapsed)


def _restore(
    repo: Repository, snapshot: Snapshot, sandbox: Path
) -> tuple[StepResult, tuple[int, int] | None]:
    """The restore step, and (files, bytes) when a tree was written (even a partial one)."""
    try:
        result = Restorer(repo, snapshot, sandbox).run()
    except NoSpace:
        raise  # the sandbox's disk, not the snapshot: nothing to record against it
    except CleancutError as exc:
        return StepResult("restore", False, str(exc), problems=[str(exc)]), None
    problems = (
        [f"damaged: {p}" for p in result.damaged]
        + [f"refused: {p}" for p in result.refused]
        + [f"error: {p}" for p in result.errors]
    )
    links = snapshot.seq + 1 if snapshot.chain else 1
    summary = (
        f"{result.files} files, {result.dirs} dirs, {result.symlinks} symlinks, "
        f"{result.bytes_written} bytes from a chain of {links}"
    )
    if problems:
        step = StepResult("restore", False, _shown(problems), problems=problems)
    else:
        step = StepResult("restore", True, summary)
    return step, (result.files, result.bytes_written)


# --- the sandbox ---------------------------------------------------------------------


def remove_sandbox(sandbox: Path) -> None:
    """Delete the sandbox even where the snapshot restored read-only directories.

    Symlinks are never followed: only the sandbox's own directories are made writable.
    """
    with contextlib.suppress(OSError):
        remove_tree(sandbox)
