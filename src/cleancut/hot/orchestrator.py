"""A hot backup: capture a clean cut of a running agent, let it run, then store the cut.

Three ways to get the cut, by what the agent allows:

- `agent`  the agent speaks the control protocol: quiesce, flush, horizon, capture,
           resume (label `quiesced`);
- `hooks`  operator commands before and after the capture (label `hooked`);
- `freeze` SIGSTOP of the agent's process group for the capture (label `frozen`,
           crash-consistent).

In each, the pause covers only the Stager's in-pause pass (metadata scan and the
files changed since the previous capture); chunking, compression, encryption and
upload run from the staged copy after the agent runs again. A quiesce that is
missed never yields a `quiesced` snapshot: the attempt is recorded as a miss,
and a fallback snapshot is taken only if the operator asked for one, labelled
for what it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cleancut.archiver.backup import BackupOptions, BackupResult, Progress
from cleancut.errors import (
    AgentMisbehaved,
    CaptureFailed,
    CleancutError,
    IntegrityError,
    QuiesceMissed,
    UsageError,
)
from cleancut.fsio.racy import FINE_WINDOW_NS
from cleancut.fsio.treewalk import remove_tree
from cleancut.journal.repo.restore import restore_to_point
from cleancut.journal.repo.ship import ship
from cleancut.journal.repo.store import last_shipped
from cleancut.ops.runner import run_backup
from cleancut.repository.attempts import backup_attempts, record_backup_attempt
from cleancut.repository.chain import own_blobs, verified_chain
from cleancut.repository.repository import Repository
from cleancut.repository.sourcedirs import Source, default_name, source_paths
from cleancut.repository.walk import load_tree
from cleancut.settings.config_file import SourceConfig
from cleancut.settings.profiles import MISS_ALERT_THRESHOLD, Profile
from cleancut.validation.capture import check_capture

from .control import AgentClient, AgentClosed, AgentTimeout
from .freeze import freeze
from .fs_snapshot import Plan, Snapshotter, plan
from .hooks import run_hook
from .options import DEFAULT_HOOK_TIMEOUT, HotOptions, HotResult
from .runtime import RuntimeContext, open_runtime
from .session import SessionReport, quiesced
from .stage import StageStats
from .stage_dirs import DirsStager


def default_staging(repo: Repository, name: str) -> Path:
    """Per source, inside the repository's cache directory (a cache: it can be deleted)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return repo.local_dir / "staging" / digest


def hot_backup(
    repo: Repository,
    source: Source,
    options: BackupOptions,
    hot: HotOptions,
    progress: Progress | None = None,
) -> HotResult:
    """`source` is one directory or several named ones (repository/sourcedirs.py); all of a
    source's directories are captured inside the one pause."""
    hot.validate()
    if isinstance(source, tuple) and hot.fallback == "journal":
        raise UsageError("the journal fallback applies to a source of one directory")
    name = options.name or default_name(source)
    stager = DirsStager(source, hot.staging or default_staging(repo, name), options.excludes)
    started = time.monotonic()
    steps: dict[str, float] = {}
    capture: dict[str, Any] = {"mode": hot.mode, "steps_ms": steps}
    missed: list[CleancutError] = []  # the quiesce miss (or agent misbehaviour), if any
    storing = False  # from here on run_backup records the attempt itself
    try:
        with stager.lock():
            stats, consistency, tree = _capture(repo, name, stager, source, hot, capture, missed)
            # The agent runs again: the formats of what changed are checked now, never in
            # the pause, and the result is stored with the snapshot.
            with _timed(steps, "validate"):
                validation, warnings = _check_formats(
                    repo, name, tree, hot, options, consistency, stager.sqlite_results(), capture
                )
            stored = replace(
                options,
                name=name,
                consistency=consistency,
                source_path=None if isinstance(source, tuple) else str(source),
                capture=capture,
                validation=validation,
                warnings=[*options.warnings, *warnings],
            )
            storing = True
            with _timed(steps, "store"):
                result = run_backup(repo, tree, stored, progress, bool(missed))
    except CleancutError as exc:
        if storing:
            raise
        # A miss, an unreachable agent, a failed hook or freeze, a busy staging area:
        # the attempt failed before anything was stored, and status must see it.
        _record_failure(repo, name, str(exc), time.monotonic() - started, bool(missed))
        alerts = _maybe_alert(repo, name, hot.alert_command) if missed else []
        if alerts:
            raise type(exc)("; ".join([str(exc), *alerts])) from None
        raise
    result.warnings.extend(f"capture: {w}" for w in stats.warnings)
    with _timed(steps, "verify"):
        _verify(repo, result)
    hot_result = HotResult(
        result,
        capture,
        bool(missed),
        str(missed[0]) if missed else None,
        any(isinstance(m, AgentMisbehaved) for m in missed),
    )
    if missed:
        hot_result.alerts = _maybe_alert(repo, name, hot.alert_command)
    return hot_result


def _check_formats(
    repo: Repository,
    name: str,
    tree: Source,
    hot: HotOptions,
    options: BackupOptions,
    consistency: str,
    sqlite_checked: dict[str, tuple[tuple[int, int, int, int], list[str]]],
    capture: dict[str, Any],
) -> tuple[dict[str, Any] | None, list[str]]:
    """The capture check's record field and warnings. A check that cannot run (the staged
    tree unreadable, the repository's parent unreadable) costs the check, not the backup.
    `sqlite_checked`: the staged databases' integrity_check results from verify_staged,
    reused rather than run a second time."""
    try:
        checked = check_capture(
            repo, name, tree, hot.formats, options.excludes, consistency, sqlite_checked
        )
    except (CleancutError, OSError) as exc:
        return None, [f"capture check not run: {exc}"]
    capture["validation"] = checked.record()
    return checked.verdicts.to_json(), checked.warnings


def _capture(
    repo: Repository,
    name: str,
    stager: DirsStager,
    source: Source,
    hot: HotOptions,
    capture: dict[str, Any],
    missed: list[CleancutError],
) -> tuple[StageStats, str, Source]:
    """Prepare, then take the cut the mode allows; verify the staged copy. Returns the
    directory to store: the staging mirror, or the journal fallback's rebuilt tree."""
    steps = capture["steps_ms"]
    with _timed(steps, "prepare"):
        stager.track()  # from before the first pass: later passes visit only what changed
        prepared = stager.prepare()  # outside the pause: the in-pause pass copies little
        if prepared.files_copied:
            # What it just copied was written moments ago, so the racy rule would copy it
            # again inside the pause. Once the timestamp tick has passed, a second pass
            # copies it for good (and whatever changed meanwhile), still outside the pause.
            time.sleep(FINE_WINDOW_NS / 1e9)  # whole-second filesystems: copied in the pause
            again = stager.prepare()
            prepared.files_copied += again.files_copied
            prepared.bytes_copied += again.bytes_copied
            prepared.warnings = again.warnings
    capture["prepare"] = prepared.to_json()
    if hot.mode == "agent":
        try:
            stats = _agent_capture(stager, hot, capture)
            consistency = "quiesced"
        except (QuiesceMissed, AgentMisbehaved) as exc:
            # Not a clean cut, whether the agent could not pause or broke its word:
            # recorded as a miss, and the operator's fallback (if any) applies.
            missed.append(exc)
            capture["miss"] = str(exc)
            if hot.fallback == "none":
                raise
            if hot.fallback == "journal":
                assert hot.journal is not None
                return _journal_capture(repo, name, stager, hot.journal, capture)
            stats, consistency = _fallback_capture(stager, hot, capture)
    elif hot.mode == "freeze":
        assert hot.freeze_pid is not None
        stats = _frozen_capture(stager, hot.freeze_pid, hot.watchdog, capture)
        consistency = "frozen"
    elif hot.mode == "hooks":
        stats = _hooked_capture(stager, source, hot, capture)
        consistency = "hooked"
    else:
        raise UsageError("a hot backup needs --agent, --freeze or --pre/--post")
    capture["consistency"] = consistency
    if "finish" not in steps:  # after resume: pinned databases copied, manifest written
        with _timed(steps, "finish"):
            stager.finish()
    capture["stage"] = stats.to_json()
    # How the cut was taken (a filesystem snapshot or the staging pass, and why), then how
    # the staging pass went (tracked or full scan, databases pinned, tails).
    capture["strategy"] = {**(capture.get("strategy") or _staged_in_pause()), **stats.strategy()}
    with _timed(steps, "verify_staged"):
        problems = stager.verify()
    if problems:
        raise CaptureFailed(f"staged copy failed verification: {problems[0]}")
    return stats, consistency, stager.staged()


def _staged_in_pause() -> dict[str, Any]:
    """The capture strategy of a mode that takes no filesystem snapshot (freeze, hooks,
    a fallback): the staging pass ran in the pause."""
    return {
        "capture": "staging-scan",
        "capture_why": "filesystem snapshots are taken for agent backups only",
        "notes": [],
    }


def _journal_capture(
    repo: Repository, name: str, stager: DirsStager, journal: Path, capture: dict[str, Any]
) -> tuple[StageStats, str, Path]:
    """The journal fallback: ship what the agent's journal holds, then rebuild the state at
    the last shipped record (its base snapshot plus replay) and store that, labelled
    `journal`. No pause: the journal's records are whole and hash-linked by construction."""
    steps = capture["steps_ms"]
    capture["fallback"] = "journal"
    capture["pause_ms"] = None
    capture["inflight"] = []
    with _timed(steps, "ship"):
        shipped = ship(repo, name, journal)
    seq = last_shipped(repo, name)
    if seq is None:
        raise QuiesceMissed(f"{capture['miss']}; the journal fallback found no shipped record")
    tree = stager.scratch / "journal-tree"
    remove_tree(tree)
    with _timed(steps, "replay"):
        try:
            point = restore_to_point(repo, name, tree, seq=seq)
        except UsageError as exc:  # no base snapshot with a journal_seq yet, for one
            raise QuiesceMissed(f"{capture['miss']}; the journal fallback cannot: {exc}") from None
    damaged = point.restore and (point.restore.damaged or point.restore.refused)
    if point.replay.reached_seq != seq or damaged:
        raise QuiesceMissed(
            f"{capture['miss']}; the journal fallback reached record "
            f"{point.replay.reached_seq} of {seq}"
            + (" with damaged files in its base" if damaged else "")
            + ": nothing stored (run 'cleancut journal verify')"
        )
    capture["journal_seq"] = point.replay.reached_seq
    capture["journal_shipped_records"] = shipped.records
    capture["consistency"] = "journal"
    capture["stage"] = StageStats().to_json()
    return StageStats(warnings=list(shipped.warnings)), "journal", tree


def _agent_capture(stager: DirsStager, hot: HotOptions, capture: dict[str, Any]) -> StageStats:
    """The agent's cut. Where the source allows (hot/fs_snapshot.py), the pause holds one
    filesystem snapshot, staged after resume and then deleted; elsewhere, or when the
    snapshot fails inside the pause, the staging pass runs in the pause. The capture
    record's `strategy` says which ran and why."""
    snap = _snapshotter(stager, capture)
    if snap is None:
        return _quiesced_capture(stager, hot, capture, None)
    with snap:  # deleted whatever happens; a miss falls back to the live source
        stats = _quiesced_capture(stager, hot, capture, snap)
        if snap.taken_ns is None:
            return stats  # the snapshot failed: staged inside the pause after all
        reading = stager.first.reading_from(snap.path, snap.taken_ns)
        with _timed(capture["steps_ms"], "stage"), reading:
            stats = stager.capture()
        warning = snap.release()
    if warning:
        stats.warnings.append(warning)
    return stats


def _snapshotter(stager: DirsStager, capture: dict[str, Any]) -> Snapshotter | None:
    """The snapshot to take in the pause, ready (its record written); None when the
    source cannot be snapshotted, with the reason in capture["strategy"]."""
    if stager.named:
        why = "a source of several directories is staged in the pause (no snapshot per directory)"
        capture["strategy"] = Plan(None, why, []).record()
        return None
    strategy = plan(stager.first.source, stager.first.staging)
    capture["strategy"] = strategy.record()
    if strategy.driver is None:
        return None
    snap = Snapshotter(strategy, stager.first.source, stager.first.staging)
    try:
        snap.open()
    except OSError as exc:
        why = f"{strategy.why}, but its snapshot could not be prepared ({exc.strerror or exc})"
        capture["strategy"] = Plan(None, why, strategy.notes).record()
        return None
    return snap


def _quiesced_capture(
    stager: DirsStager, hot: HotOptions, capture: dict[str, Any], snap: Snapshotter | None
) -> StageStats:
    """Quiesce, flush, horizon, then the in-pause work: the snapshot (atomic: nothing can
    move during it), or the staging pass and the check that nothing moved during it."""
    assert hot.agent is not None
    report = SessionReport()
    source = stager.source
    runtime = open_runtime(
        hot.agent,
        RuntimeContext(
            source=None if isinstance(source, tuple) else source,
            token_file=hot.agent_token_file,
            dirs={d.name: d.path for d in source} if isinstance(source, tuple) else {},
        ),
    )

    def capture_and_check() -> tuple[StageStats, list[str]]:
        if snap is not None and _snapshot_in_pause(snap, capture):
            return StageStats(), []
        stats = stager.capture(defer=True)
        return stats, stager.changed_since_capture()  # still inside the pause

    try:
        with stager.tracking_held():  # no tracker thread waking inside the pause
            stats, changed = quiesced(
                hot.agent, hot.quiesce_timeout, hot.horizon, capture_and_check, report,
                hot.lease, runtime=runtime,
            )
        with _timed(capture["steps_ms"], "finish"):
            stager.finish()  # resumed: the staged tree is complete once this returns
        # What the captured state itself says is in flight, when the runtime reads it there
        # (in each of the source's directories).
        found = [runtime.captured_inflight(tree) for tree in stager.trees.values()]
        if any(f is not None for f in found):
            report.inflight = [a for f in found if f for a in f]
    finally:
        capture["steps_ms"].update(report.steps_ms)
        capture["pause_ms"] = report.pause_ms
        capture["agent"] = report.agent
        capture["inflight"] = report.inflight
        capture["horizon_reached"] = report.horizon_reached
        capture["horizon_mode"] = report.horizon_mode
        capture["peer_pid"] = report.peer_pid
        if report.journal_seq is not None:
            capture["journal_seq"] = report.journal_seq
    changed = [
        rel for rel in changed if not runtime.expected_change(rel, stager.staged_path(rel))
    ]
    if changed:
        capture["changed_while_quiesced"] = changed[:100]
        more = len(changed) - 5
        shown = ", ".join(changed[:5]) + (f" and {more} more" if more > 0 else "")
        raise AgentMisbehaved(
            f"the agent acknowledged quiesce but {len(changed)} file(s) changed during the "
            f"capture ({shown}): not a clean cut, not stored as quiesced"
        )
    return stats


def _snapshot_in_pause(snap: Snapshotter, capture: dict[str, Any]) -> bool:
    """Take the snapshot; False (and the reason recorded) when the filesystem refuses."""
    try:
        with _timed(capture["steps_ms"], "snapshot"):  # the ioctl alone, within `capture`
            snap.take()
        return True
    except OSError as exc:
        why = f"the {snap.driver.name} snapshot failed in the pause ({exc.strerror or exc})"
        notes = capture["strategy"]["notes"]
        capture["strategy"] = Plan(None, f"{why}; staged in the pause instead", notes).record()
        return False


def _fallback_capture(
    stager: DirsStager, hot: HotOptions, capture: dict[str, Any]
) -> tuple[StageStats, str]:
    capture["fallback"] = hot.fallback
    capture["pause_ms"] = None
    capture["inflight"] = []  # not known at the moment of this copy
    if hot.fallback == "frozen":
        pid = hot.freeze_pid or capture.get("peer_pid")
        if not pid:
            raise QuiesceMissed(
                f"{capture['miss']}; the frozen fallback needs --freeze PID (the agent's pid "
                "could not be read from the socket)"
            )
        return _frozen_capture(stager, int(pid), hot.watchdog, capture), "frozen"
    with _timed(capture["steps_ms"], "capture"):
        return stager.capture(), "unquiesced"


def _frozen_capture(
    stager: DirsStager, pid: int, watchdog: float, capture: dict[str, Any]
) -> StageStats:
    steps = capture["steps_ms"]
    frozen_at = time.monotonic()
    with freeze(pid, watchdog) as info:
        steps["freeze"] = round(info.stop_ms, 3)
        with _timed(steps, "capture"):
            stats = stager.capture(defer=True)
    capture["pause_ms"] = round((time.monotonic() - frozen_at) * 1000, 3)
    capture["frozen_pids"] = list(info.pids)
    return stats


def _hooked_capture(
    stager: DirsStager, source: Source, hot: HotOptions, capture: dict[str, Any]
) -> StageStats:
    steps = capture["steps_ms"]
    # A source of several directories: their paths, separated by ':' as in $PATH.
    env = {"CLEANCUT_SOURCE": ":".join(source_paths(source))}
    hooks: dict[str, Any] = {}
    capture["hooks"] = hooks
    try:
        if hot.pre:
            with _timed(steps, "pre"):
                pre = run_hook("pre", hot.pre, hot.hook_timeout, env)
            hooks["pre"] = {"returncode": pre.returncode, "duration_s": pre.duration_s}
        paused_at = time.monotonic()
        with _timed(steps, "capture"):
            stats = stager.capture(defer=True)
        capture["pause_ms"] = round((time.monotonic() - paused_at) * 1000, 3)
    finally:
        if hot.post:  # always, once the pre hook was started: it undoes what pre did
            with _timed(steps, "post"):
                post = run_hook("post", hot.post, hot.hook_timeout, env)
            hooks["post"] = {"returncode": post.returncode, "duration_s": post.duration_s}
    return stats


def _record_failure(
    repo: Repository, name: str, error: str, duration_s: float, quiesce_missed: bool
) -> None:
    with contextlib.suppress(CleancutError, OSError):
        record_backup_attempt(
            repo,
            name=name,
            ok=False,
            kind=None,
            snapshot_id=None,
            error=error,
            duration_s=duration_s,
            quiesce_missed=quiesce_missed,
            consistency=None,
        )


def consecutive_misses(repo: Repository, name: str) -> int:
    misses = 0
    for attempt in reversed(backup_attempts(repo, name)):
        if not attempt.get("quiesce_missed"):
            break
        misses += 1
    return misses


def _maybe_alert(repo: Repository, name: str, command: str | None) -> list[str]:
    misses = consecutive_misses(repo, name)
    if misses < MISS_ALERT_THRESHOLD:
        return []
    message = f"{name}: {misses} consecutive backup windows missed quiesce"
    if command:
        env = {"CLEANCUT_SOURCE": name, "CLEANCUT_MISSES": str(misses), "CLEANCUT_ALERT": message}
        try:
            run_hook("alert", command, DEFAULT_HOOK_TIMEOUT, env)
        except CaptureFailed as exc:
            return [message, f"alert command failed: {exc}"]
    return [message]


def _verify(repo: Repository, result: BackupResult) -> None:
    """Read the committed snapshot back: its record authenticates and matches what was
    written, its chain links hold, its delta manifest (or root tree) decrypts, and
    every data blob it names is in the index."""
    snapshot = repo.load_snapshot(result.snapshot.id)
    if snapshot.record_hash != result.snapshot.record_hash:
        raise IntegrityError(f"snapshot {snapshot.id[:12]} reads back differently than written")
    verified_chain(repo, snapshot)
    if snapshot.is_full:
        load_tree(repo, snapshot.tree)
        return
    missing = [b for b in own_blobs(repo, snapshot) if not repo.has_blob(b)]
    if missing:
        raise IntegrityError(
            f"snapshot {snapshot.id[:12]}: {len(missing)} blob(s) it names are not indexed"
        )


@contextlib.contextmanager
def _timed(steps: dict[str, float], name: str) -> Any:
    started = time.monotonic()
    try:
        yield
    finally:
        steps[name] = round((time.monotonic() - started) * 1000, 3)


def tick_backup(
    repo: Repository,
    src: SourceConfig,
    options: BackupOptions,
    profile: Profile,
    alert_command: str | None = None,
) -> BackupResult:
    """How `tick` and `daemon` back up a configured source: hot when it names an agent
    (or hooks), with the profile's quiesce timeout and horizon; plain otherwise."""
    hot = HotOptions(
        agent=src.agent,
        fallback=src.fallback or "none",
        pre=None if src.agent else src.pre,
        post=None if src.agent else src.post,
        staging=src.staging,
        journal=src.journal,
        formats=src.validate,
        quiesce_timeout=profile.quiesce_timeout,
        horizon=profile.horizon,
        alert_command=alert_command,
    )
    if hot.mode is None:
        return run_backup(repo, src.source, options)
    result = hot_backup(repo, src.source, options, hot)
    assert result.backup is not None
    if result.quiesce_missed:
        result.backup.warnings.append(result.miss_reason or "quiesce missed")
        result.backup.warnings.extend(f"alert: {a}" for a in result.alerts)
    return result.backup


def journal_ack(src: SourceConfig) -> int | None:
    """The journal record the source's agent acknowledges as durable: a `flush` (no
    quiesce) answers with it. None when there is no agent, it does not journal, or it
    cannot be reached (then what its journal holds intact is shipped)."""
    if not src.agent:
        return None
    client = AgentClient(src.agent)
    try:
        client.connect()
        hello = client.hello()
        if "journal" not in (hello.get("capabilities") or []):
            return None
        reply = client.request("flush", timeout=30.0)
    except (CleancutError, AgentTimeout, AgentClosed):
        return None
    finally:
        client.close()
    seq = reply.get("journal_seq") if reply.get("ok") else None
    return seq if isinstance(seq, int) else None
