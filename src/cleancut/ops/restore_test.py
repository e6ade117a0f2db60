"""Restore tests: prove that a snapshot restores, byte for byte, into something usable.

A backup that has never been restored is a hope, not a backup (docs/architecture.md:
"proof every week that a restore from an incremental chain works"). A test
restores one snapshot into a throw-away sandbox by replaying its verified chain,
then checks the result from disk, independently of the code that wrote it:

    restore   the Restorer, as an operator would run it (its own blob checks included)
    verify    every path of the snapshot exists with the right type; every file,
              read back and re-chunked, gives exactly the blob ids and size recorded
    validate  the formats an agent depends on: JSON parses, JSONL lines parse and
              hold no NUL bytes, SQLite passes `PRAGMA integrity_check`
    smoke     optional: the operator's own command, run against the sandbox

The result is written to the repository as a RESTORE_TEST record, so any host sees
it (`status`), and a snapshot that failed is never a parent again (policy reads
`records.failed_snapshots`). Problems of the host running the test (a full
sandbox disk) are raised instead of recorded: they say nothing about the snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut import clock
from cleancut.archiver.policy import latest_of
from cleancut.childenv import child_env
from cleancut.errors import CleancutError, ExitCode, NoSpace, SnapshotNotFound, UsageError
from cleancut.fsio.treewalk import remove_tree, walk
from cleancut.repository.chain import snapshot_state
from cleancut.repository.chunker import chunk_fd
from cleancut.repository.records import RESTORE_TEST, list_records, write_record
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.state import State
from cleancut.repository.tree import DIR, FILE, SYMLINK
from cleancut.restorer.restore import Restorer
from cleancut.sqlitecheck import integrity_problems

PICKS = ("latest", "random", "oldest-untested")
STEPS = ("restore", "verify", "validate", "smoke")
SANDBOX_PREFIX = "cleancut-restore-test-"
RESTORE_DIR_ENV = "CLEANCUT_RESTORE_DIR"
RESTORE_SNAPSHOT_ENV = "CLEANCUT_RESTORE_SNAPSHOT"
DEFAULT_SMOKE_TIMEOUT = 600.0
MAX_PROBLEMS = 50  # per step, in the record: enough to act on, bounded in size
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class StepResult:
    name: str
    passed: bool
    detail: str
    duration_s: float = 0.0
    skipped: bool = False  # not run because an earlier step left nothing to check
    problems: list[str] = field(default_factory=list)

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


def source_names(repo: Repository) -> list[str]:
    return sorted({s.name for s in repo.snapshots()})


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
) -> RestoreTestResult:
    """Restore `snapshot` into a fresh directory under `sandbox_root` (default: the system
    temp dir), check it, record the result (unless `record` is False) and remove the
    sandbox (unless `keep`). `timeout` bounds the smoke command, in seconds."""
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
        steps += _checks(repo, snapshot, sandbox, restore_step, complete, smoke_cmd, timeout)
    finally:
        if not keep:
            remove_sandbox(sandbox)
    result = RestoreTestResult(snapshot, steps, rto, nbytes, files, started, sandbox, kept=keep)
    if record:
        result.record_id = write_record(repo, result.to_record())
    return result


def _checks(
    repo: Repository,
    snapshot: Snapshot,
    sandbox: Path,
    restore_step: StepResult,
    complete: tuple[int, int] | None,
    smoke_cmd: str | None,
    timeout: float,
) -> list[StepResult]:
    """verify, validate and smoke, each skipped (and so not passed) when what it would
    check is not there: no tree at all, or for smoke, an incomplete one."""
    wanted = ["verify", "validate"] + (["smoke"] if smoke_cmd else [])
    if complete is None:
        return [_skipped(name, "the restore produced no tree") for name in wanted]
    try:
        state = snapshot_state(repo, snapshot)
    except CleancutError as exc:
        return [_skipped(name, f"the snapshot's state is unreadable ({exc})") for name in wanted]
    steps = [
        _timed("verify", lambda: verify_tree(repo, state, sandbox)),
        _timed("validate", lambda: validate_formats(state, sandbox)),
    ]
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


# --- verify: the restored tree against the snapshot's state, from disk ------------


def verify_tree(repo: Repository, state: State, root: Path) -> tuple[list[str], str]:
    """Every path of the state exists with its type; files re-chunk to their blob ids.

    Re-chunking with the repository's own parameters and hashing with its ID key
    compares the bytes on disk with what the backup read, end to end, without
    trusting anything the restore code reported.
    """
    problems: list[str] = []
    checked = 0
    for rel in sorted(state):
        node = state[rel]
        path = root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        except OSError as exc:
            problems.append(f"{rel}: cannot stat ({exc.strerror})")
            continue
        if node.type == DIR and not stat.S_ISDIR(st.st_mode):
            problems.append(f"{rel}: not a directory")
        elif node.type == SYMLINK:
            if not stat.S_ISLNK(st.st_mode):
                problems.append(f"{rel}: not a symlink")
            elif os.readlink(path) != (node.target or ""):
                problems.append(f"{rel}: symlink target differs")
        elif node.type == FILE:
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
                continue
            problem = _verify_file(repo, path, node.content, node.size)
            if problem:
                problems.append(f"{rel}: {problem}")
        checked += 1
    extra = sorted(set(_walk(root)) - set(state))
    problems += [f"{rel}: not in the snapshot" for rel in extra]
    return problems, f"{checked} of {len(state)} entries match the snapshot"


def _verify_file(repo: Repository, path: Path, content: list[str], size: int) -> str | None:
    try:
        fd = _open_for_reading(path)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    try:
        ids: list[str] = []
        total = 0
        for chunk in chunk_fd(fd, repo.config.chunker, size):
            ids.append(repo.keys.blob_id(chunk).hex())
            total += len(chunk)
    finally:
        os.close(fd)
    if total != size:
        return f"size {total} differs from the recorded {size}"
    if ids != content:
        bad = next((i for i, (a, b) in enumerate(zip(ids, content, strict=False)) if a != b), None)
        where = f"chunk {bad}" if bad is not None else "chunk count"
        return f"content differs from the snapshot ({where})"
    return None


def _open_for_reading(path: Path) -> int:
    """Open a restored file even when its recorded mode denies reading to its owner
    (the sandbox is ours; the mode is put back at once)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        mode = stat.S_IMODE(path.lstat().st_mode)
        os.chmod(path, mode | stat.S_IRUSR)
        try:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        finally:
            os.chmod(path, mode)


def _walk(root: Path) -> Iterator[str]:
    for level in walk(root):
        for name in level.dirs + level.files:
            yield f"{level.rel}/{name}" if level.rel else name


# --- validate: the formats an agent depends on -----------------------------------


def validate_formats(state: State, root: Path) -> tuple[list[str], str]:
    """JSON, JSONL and SQLite files of the state, as restored, must be usable.

    Files missing from disk are left to verify. SQLite databases are recognised by
    their header (whatever the name) or by a .sqlite/.sqlite3 name; they are opened
    as the agent would open them, so a restored WAL or hot journal is applied first,
    exactly as on a real restore.
    """
    problems: list[str] = []
    counts = {"JSON": 0, "JSONL": 0, "SQLite": 0}
    for rel in sorted(state):
        if state[rel].type != FILE:
            continue
        path = root / rel
        if not path.is_file() or path.is_symlink():
            continue
        kind = _format_of(path)
        if kind is None:
            continue
        counts[kind] += 1
        problem = _VALIDATORS[kind](path)
        if problem:
            problems.append(f"{rel}: {problem}")
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) + " files checked"
    return problems, summary


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".json"):
        return "JSON"
    if name.endswith((".jsonl", ".ndjson")):
        return "JSONL"
    if name.endswith((".sqlite", ".sqlite3")):
        return "SQLite"
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return None
    return "SQLite" if head == SQLITE_MAGIC else None


def validate_json(path: Path) -> str | None:
    try:
        json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON ({exc})"
    except RecursionError:  # deeper than the parser recurses: neither good nor bad known
        return "nested too deeply to check"
    return None


def validate_jsonl(path: Path) -> str | None:
    """Every line parses, except possibly the last (an append torn by a crash is
    expected and the agent truncates it); a NUL byte anywhere means blocks were lost.
    Blank lines are ignored."""
    lines: list[tuple[int, bytes]] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if b"\x00" in line:
                return f"NUL bytes in line {number}"
            if line.strip():
                lines.append((number, line))
    for number, line in lines[:-1]:
        try:
            json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return f"line {number} is not valid JSON"
        except RecursionError:
            return f"line {number} is nested too deeply to check"
    return None


def validate_sqlite(path: Path) -> str | None:
    """Opened read-write, as the agent opens it: a restored WAL is applied, and CHECK
    constraints are verified (sqlitecheck: a current SQLite, not Python's)."""
    problems = integrity_problems(str(path), read_only=False)
    if not problems:
        return None
    if problems[0].startswith(("cannot open", "integrity_check failed")):
        return problems[0]
    return "integrity_check: " + "; ".join(problems[:3])


_VALIDATORS: dict[str, Callable[[Path], str | None]] = {
    "JSON": validate_json,
    "JSONL": validate_jsonl,
    "SQLite": validate_sqlite,
}


# --- smoke: the operator's own check -----------------------------------------------


def run_smoke(
    command: str, sandbox: Path, snapshot: Snapshot, timeout: float
) -> tuple[list[str], str]:
    """Run `command` through the shell in the sandbox, with CLEANCUT_RESTORE_DIR set.

    It runs in its own process group, so a timeout kills everything it started,
    not only the shell.
    """
    shown = command if len(command) <= 60 else command[:57] + "..."
    # It checks the restored data: no passphrase, no storage credentials, no tokens.
    env = child_env({RESTORE_DIR_ENV: str(sandbox), RESTORE_SNAPSHOT_ENV: snapshot.id})
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: any amount of output is fine
        proc = subprocess.Popen(
            command,
            shell=True,
            cwd=sandbox,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return [f"timed out after {timeout:g}s"], f"smoke command {shown!r}"
        out.seek(max(0, out.seek(0, os.SEEK_END) - 400))
        tail = out.read().decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        said = f" (output: {tail})" if tail else ""
        return [f"exited {proc.returncode}{said}"], f"smoke command {shown!r}"
    return [], f"smoke command {shown!r} exited 0"


# --- the sandbox ---------------------------------------------------------------------


def remove_sandbox(sandbox: Path) -> None:
    """Delete the sandbox even where the snapshot restored read-only directories.

    Symlinks are never followed: only the sandbox's own directories are made writable.
    """
    with contextlib.suppress(OSError):
        remove_tree(sandbox)
