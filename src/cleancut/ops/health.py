"""Health of each source: is it backed up, restorable and on schedule?

Everything is derived from what the repository holds (snapshot records, backup
attempt and restore-test records) and the profile's limits, so any host with the
passphrase gets the same answer, with no local state and no daemon.

A source is `critical` when recovery is at risk now, `warn` when it will be if
nothing changes, else `ok`:

    critical  no snapshot at all; the current chain reached the 72 h cap (no new
              full for that long); the last restore test failed; 3 consecutive
              backup windows missed quiesce (docs/architecture.md: the alert)
    warn      the last full is older than the profile's max full age; no passing
              restore test within the restore-test interval plus a day's grace
              (8 days by default; a source younger than that is not warned);
              the last backup attempt failed; its journal has a gap that no full
              snapshot taken since covers (until the forced full exists); the
              current chain forked (two snapshots with one sequence number) or
              holds a snapshot taken while the clock read earlier than the one
              before it (clock_went_back); the newest snapshot is `quiesced` and
              holds files torn since an earlier snapshot had them valid (its
              capture check, src/cleancut/validation/capture.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cleancut.archiver.policy import gap_range, open_journal_gap
from cleancut.clock import age_text, seconds_since
from cleancut.repository.chain import find_forks
from cleancut.repository.records import BACKUP_ATTEMPT, JOURNAL_GAP, RESTORE_TEST, list_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot, chain_order
from cleancut.repository.verdicts import Verdicts
from cleancut.settings.profiles import CHAIN_CAP, MISS_ALERT_THRESHOLD, Profile, get_profile
from cleancut.settings.units import DAY, format_duration

OK = "ok"
WARN = "warn"
CRITICAL = "critical"
SEVERITY = {OK: 0, WARN: 1, CRITICAL: 2}
RESTORE_TEST_GRACE = DAY  # a weekly job that runs a little late is not yet a problem
WINDOWS = {"7d": 7 * DAY, "30d": 30 * DAY}


@dataclass(frozen=True)
class Finding:
    state: str  # warn or critical
    reason: str


@dataclass
class LastRestoreTest:
    time: str
    age_s: float
    passed: bool
    rto_s: float | None
    snapshot: str
    failed_steps: list[str]


@dataclass
class SourceHealth:
    name: str
    snapshots: int = 0
    max_full_age_s: float = 0.0
    restore_test_limit_s: float = 0.0
    last_full_time: str | None = None
    last_full_age_s: float | None = None
    chain: str | None = None
    chain_length: int = 0
    chain_age_s: float | None = None
    last_incremental_time: str | None = None
    last_incremental_age_s: float | None = None
    last_snapshot_time: str | None = None
    last_snapshot_age_s: float | None = None
    last_restore_test: LastRestoreTest | None = None
    last_passing_restore_test_age_s: float | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # per window
    success_rate: dict[str, float | None] = field(default_factory=dict)  # per window, 0..1
    last_attempt_ok: bool | None = None
    last_attempt_error: str | None = None
    last_attempt_age_s: float | None = None
    consecutive_quiesce_misses: int = 0
    journal_gap: dict[str, Any] | None = None  # the open journal-gap record, if any
    torn_files: list[str] = field(default_factory=list)  # in the newest quiesced snapshot
    findings: list[Finding] = field(default_factory=list)

    @property
    def state(self) -> str:
        worst = max((SEVERITY[f.state] for f in self.findings), default=0)
        return next(s for s, n in SEVERITY.items() if n == worst)

    @property
    def reasons(self) -> list[str]:
        return [f.reason for f in self.findings]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state
        out["reasons"] = self.reasons
        return out


def overall_state(sources: list[SourceHealth]) -> str:
    """The worst state of all sources (ok when there is none)."""
    worst = max((SEVERITY[s.state] for s in sources), default=0)
    return next(s for s, n in SEVERITY.items() if n == worst)


def source_health(
    repo: Repository,
    now: datetime,
    profiles: Mapping[str, Profile] | None = None,
    default: Profile | None = None,
) -> list[SourceHealth]:
    """Health of every source the repository knows (by snapshots or attempts), by name.

    profiles: the profile a source is backed up with, when it has its own; the others
    use `default`, itself the repository's profile unless given.
    """
    default = default or get_profile(repo.config.profile)
    snapshots = repo.snapshots()
    records = list_records(repo)
    attempts = [r for r in records if r.get("type") == BACKUP_ATTEMPT]
    tests = [r for r in records if r.get("type") == RESTORE_TEST]
    gaps = [r for r in records if r.get("type") == JOURNAL_GAP]
    names = {s.name for s in snapshots} | {str(r.get("name")) for r in attempts if r.get("name")}
    names |= {str(r.get("name")) for r in gaps if r.get("name")}
    out = []
    for name in sorted(names):
        mine = [s for s in snapshots if s.name == name]
        h = _health(
            name,
            now,
            (profiles or {}).get(name, default),
            mine,
            [r for r in attempts if r.get("name") == name],
            [r for r in tests if r.get("name") == name],
        )
        gap = open_journal_gap(gaps, mine, name)
        if gap is not None:
            h.journal_gap = {k: v for k, v in gap.items() if k != "id"}
            h.findings.append(
                Finding(
                    WARN,
                    f"journal gap at seq {gap_range(gap)} ({age_text(_age(now, gap['time']))} "
                    "ago): the journal cannot continue until a full snapshot is taken",
                )
            )
        out.append(h)
    return out


def _age(now: datetime, when: str) -> float:
    """An age for the report: a time ahead of this host's clock (skew) reads as 0."""
    return max(0.0, seconds_since(when, now))


def _newest(snaps: list[Snapshot]) -> Snapshot | None:
    return max(snaps, key=chain_order(snaps)) if snaps else None


def _days(seconds: float) -> str:
    days = seconds / DAY
    return f"{days:g} days" if days.is_integer() else format_duration(seconds)


def _health(
    name: str,
    now: datetime,
    profile: Profile,
    snaps: list[Snapshot],
    attempts: list[dict[str, Any]],
    tests: list[dict[str, Any]],
) -> SourceHealth:
    h = SourceHealth(name, snapshots=len(snaps), max_full_age_s=profile.max_full_age)
    h.restore_test_limit_s = profile.restore_test_interval + RESTORE_TEST_GRACE
    _snapshot_facts(h, now, snaps)
    _restore_test_facts(h, now, tests)
    _attempt_facts(h, now, attempts)
    h.findings = _judge(h, now, snaps)
    return h


def _snapshot_facts(h: SourceHealth, now: datetime, snaps: list[Snapshot]) -> None:
    latest = _newest(snaps)
    if latest is None:
        return
    h.last_snapshot_time = latest.time
    h.last_snapshot_age_s = _age(now, latest.time)
    full = _newest([s for s in snaps if s.is_full])
    if full is not None:
        h.last_full_time = full.time
        h.last_full_age_s = _age(now, full.time)
    inc = _newest([s for s in snaps if not s.is_full])
    if inc is not None:
        h.last_incremental_time = inc.time
        h.last_incremental_age_s = _age(now, inc.time)
    h.chain = latest.chain
    h.chain_length = latest.seq + 1  # links a restore of the newest snapshot replays
    head = next((s for s in snaps if s.chain == latest.chain and s.is_full), None)
    if head is not None:
        h.chain_age_s = _age(now, head.time)


def _restore_test_facts(h: SourceHealth, now: datetime, tests: list[dict[str, Any]]) -> None:
    if not tests:
        return
    last = tests[-1]  # list_records is oldest first
    steps = last.get("steps") or {}
    h.last_restore_test = LastRestoreTest(
        time=last["time"],
        age_s=_age(now, last["time"]),
        passed=bool(last.get("passed")),
        rto_s=last.get("rto_s"),
        snapshot=str(last.get("snapshot", "")),
        failed_steps=[n for n, s in steps.items() if not s.get("passed") and not s.get("skipped")],
    )
    passing = [t for t in tests if t.get("passed")]
    if passing:
        h.last_passing_restore_test_age_s = _age(now, passing[-1]["time"])


def _attempt_facts(h: SourceHealth, now: datetime, attempts: list[dict[str, Any]]) -> None:
    for window, seconds in WINDOWS.items():
        inside = [a for a in attempts if _age(now, a["time"]) <= seconds]
        h.attempts[window] = len(inside)
        ok = sum(1 for a in inside if a.get("ok"))
        h.success_rate[window] = round(ok / len(inside), 4) if inside else None
    if attempts:
        last = attempts[-1]
        h.last_attempt_ok = bool(last.get("ok"))
        h.last_attempt_error = last.get("error")
        h.last_attempt_age_s = _age(now, last["time"])
    misses = 0
    for attempt in reversed(attempts):
        if not attempt.get("quiesce_missed"):
            break
        misses += 1
    h.consecutive_quiesce_misses = misses


def _judge(h: SourceHealth, now: datetime, snaps: list[Snapshot]) -> list[Finding]:
    found: list[Finding] = []
    if not snaps:
        found.append(Finding(CRITICAL, "no snapshot of this source"))
    if h.chain_age_s is not None and h.chain_age_s >= CHAIN_CAP:
        found.append(
            Finding(
                CRITICAL,
                f"chain at the {format_duration(CHAIN_CAP)} cap "
                f"(started {age_text(h.chain_age_s)} ago)",
            )
        )
    if h.last_full_age_s is not None and h.last_full_age_s > h.max_full_age_s:
        found.append(
            Finding(
                WARN,
                f"last full older than {format_duration(h.max_full_age_s)} "
                f"({age_text(h.last_full_age_s)} old)",
            )
        )
    test = h.last_restore_test
    if test is not None and not test.passed:
        steps = ", ".join(test.failed_steps) or "unknown step"
        found.append(
            Finding(
                CRITICAL,
                f"last restore test failed ({steps}; snapshot {test.snapshot[:12]}, "
                f"{age_text(test.age_s)} ago)",
            )
        )
    limit = h.restore_test_limit_s
    passed_age = h.last_passing_restore_test_age_s
    if passed_age is None:
        source_age = max((_age(now, s.time) for s in snaps), default=0.0)
        if source_age > limit:  # a source younger than the limit has had no chance yet
            found.append(Finding(WARN, f"no passing restore test in {_days(limit)} (never passed)"))
    elif passed_age > limit:
        found.append(
            Finding(
                WARN,
                f"no passing restore test in {_days(limit)} (last pass {age_text(passed_age)} ago)",
            )
        )
    if h.consecutive_quiesce_misses >= MISS_ALERT_THRESHOLD:
        found.append(
            Finding(
                CRITICAL,
                f"{h.consecutive_quiesce_misses} consecutive backup windows missed quiesce",
            )
        )
    found.extend(_clock_findings(h, snaps))
    found.extend(_torn_findings(h, snaps))
    if h.last_attempt_ok is False and _failure_is_latest(h):
        error = f": {h.last_attempt_error}" if h.last_attempt_error else ""
        age = age_text(h.last_attempt_age_s or 0.0)
        found.append(Finding(WARN, f"last backup failed ({age} ago){error}"))
    return found


def _failure_is_latest(h: SourceHealth) -> bool:
    """A failed attempt counts only if no snapshot was taken after it (a backup that
    does not record attempts may have succeeded since)."""
    if h.last_attempt_age_s is None:
        return False
    return h.last_snapshot_age_s is None or h.last_snapshot_age_s >= h.last_attempt_age_s


def _torn_findings(h: SourceHealth, snaps: list[Snapshot]) -> list[Finding]:
    """Files of the newest snapshot, a quiesced one, that its capture check found invalid
    although an earlier snapshot held them valid: the agent's cut holds torn files."""
    latest = _newest(snaps)
    if latest is None or latest.consistency != "quiesced":
        return []
    verdicts = Verdicts.from_json(latest.validation)
    if verdicts is None:
        return []
    h.torn_files = sorted(p for p, e in verdicts.files.items() if e.was_valid)
    if not h.torn_files:
        return []
    more = len(h.torn_files) - 3
    shown = ", ".join(h.torn_files[:3]) + (f" and {more} more" if more > 0 else "")
    return [
        Finding(
            WARN,
            f"consistency: the newest snapshot {latest.id[:12]} (quiesced) holds "
            f"{len(h.torn_files)} file(s) torn since an earlier snapshot had them valid: "
            f"{shown}",
        )
    ]


def _clock_findings(h: SourceHealth, snaps: list[Snapshot]) -> list[Finding]:
    """A fork in the current chain, and snapshots of it taken with the clock stepped back."""
    current = [s for s in snaps if h.chain and s.chain == h.chain]
    found = [Finding(WARN, fork.describe()) for fork in find_forks(current)]
    skewed = [s for s in current if s.clock_went_back]
    if skewed:
        last = max(skewed, key=chain_order(skewed))
        found.append(
            Finding(
                WARN,
                f"the clock went back: {len(skewed)} snapshot(s) of the current chain were "
                f"taken earlier than the one before (last {last.id[:12]}, clock read "
                f"{last.clock_reading}); check NTP and the host's clock",
            )
        )
    return found
