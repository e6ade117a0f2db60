"""What the metrics are, derived from the repository: the same data `status --json` reads.

Two kinds of figures, kept apart because Prometheus treats them apart:

- Events: each snapshot, backup-attempt record and restore-test record adds to counters
  (attempts, failures, quiesce misses, bytes added) and histograms (pause, backup and
  restore durations). They are additive: a counter's value is the sum over the events,
  so a fresh process rebuilds it from the repository (prometheus_tally.py keeps it from
  going down when forget or record compaction removes an event).
- Gauges: the state now (last success per source and kind, the current chain, the last
  restore test, health), from source_health. Times are exported as Unix timestamps, not
  ages, so a textfile read an hour later still gives the right age with `time() - x`.

This module knows no Prometheus library; prometheus.py turns these into metric families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cleancut.clock import from_iso
from cleancut.repository.records import BACKUP_ATTEMPT, RESTORE_TEST, list_records
from cleancut.repository.repository import Repository
from cleancut.settings.profiles import CHAIN_CAP

from .health import SEVERITY, SourceHealth

Labels = tuple[tuple[str, str], ...]

# Seconds. Pauses are milliseconds long (the design's budget is the agent's drain plus
# 50 ms); backups and restores take from a fraction of a second to an hour.
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

COUNTERS: dict[str, str] = {
    "cleancut_backup_attempts": "Backup attempts recorded (successful or not).",
    "cleancut_backup_failures": "Backup attempts that failed.",
    "cleancut_quiesce_misses": "Backup attempts whose window missed quiesce.",
    "cleancut_snapshots_written": "Snapshots written, by kind.",
    "cleancut_bytes_added": "Bytes the backups added to the repository (after dedup).",
    "cleancut_restore_tests": "Restore tests run.",
    "cleancut_restore_test_failures": "Restore tests that failed.",
}
# The prometheus_client names: a counter family is named without _total, its sample with.

HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "cleancut_pause_seconds": (
        "How long the agent was paused for the capture of a hot backup.",
        PAUSE_BUCKETS,
    ),
    "cleancut_backup_duration_seconds": (
        "Duration of the backups that wrote a snapshot.",
        DURATION_BUCKETS,
    ),
    "cleancut_restore_duration_seconds": (
        "Restore step of each restore test: the measured recovery time (RTO).",
        DURATION_BUCKETS,
    ),
}

GAUGES: dict[str, str] = {
    "cleancut_last_success_timestamp_seconds": "Time of the newest snapshot, per source and kind.",
    "cleancut_last_attempt_timestamp_seconds": "Time of the newest backup attempt.",
    "cleancut_last_attempt_success": "1 if the newest backup attempt succeeded, else 0.",
    "cleancut_snapshots": "Snapshots of the source in the repository.",
    "cleancut_chain_length": "Links a restore of the newest snapshot replays.",
    "cleancut_chain_start_timestamp_seconds": "Time of the current chain's full snapshot.",
    "cleancut_chain_cap_seconds": "Age at which a chain is critical (no full for that long).",
    "cleancut_max_full_age_seconds": "The source's profile: a full is due after this age.",
    "cleancut_restore_test_limit_seconds": "Passing restore test needed within this (+grace).",
    "cleancut_restore_test_passed": "1 if the last restore test passed, else 0.",
    "cleancut_restore_test_timestamp_seconds": "Time of the last restore test.",
    "cleancut_restore_test_last_pass_timestamp_seconds": "Time of the last passing test.",
    "cleancut_restore_test_rto_seconds": "Restore time of the last restore test.",
    "cleancut_quiesce_misses_consecutive": "Backup windows in a row that missed quiesce.",
    "cleancut_health_state": "0 ok, 1 warn, 2 critical (as status says).",
    "cleancut_health_reasons": "Reasons status gives for the state.",
    "cleancut_metrics_generated_timestamp_seconds": "When these figures were computed.",
}


@dataclass(frozen=True)
class Sample:
    metric: str
    labels: Labels
    value: float


@dataclass
class Event:
    """One snapshot or record: what it adds to counters, what it observes in histograms."""

    id: str
    counts: list[Sample] = field(default_factory=list)
    observations: list[Sample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "c": [[s.metric, [list(p) for p in s.labels], s.value] for s in self.counts],
            "o": [[s.metric, [list(p) for p in s.labels], s.value] for s in self.observations],
        }

    @classmethod
    def from_json(cls, event_id: str, doc: dict[str, Any]) -> Event:
        def samples(rows: list[Any]) -> list[Sample]:
            return [
                Sample(str(m), tuple((str(k), str(v)) for k, v in lab), float(x))
                for m, lab, x in rows
            ]

        return cls(event_id, samples(doc.get("c", [])), samples(doc.get("o", [])))


def additive(event: Event) -> dict[tuple[str, Labels], float]:
    """The event's sample increments: counters as `_total`, each observation as its
    `_bucket` (cumulative, le=...), `_sum` and `_count`."""
    out: dict[tuple[str, Labels], float] = {}

    def add(name: str, labels: Labels, value: float) -> None:
        out[(name, labels)] = out.get((name, labels), 0.0) + value

    for s in event.counts:
        add(s.metric + "_total", s.labels, s.value)
    for s in event.observations:
        buckets = HISTOGRAMS[s.metric][1]
        for bound in (*buckets, float("inf")):
            le = "+Inf" if bound == float("inf") else repr(bound)
            add(s.metric + "_bucket", (*s.labels, ("le", le)), 1.0 if s.value <= bound else 0.0)
        add(s.metric + "_sum", s.labels, s.value)
        add(s.metric + "_count", s.labels, 1.0)
    return out


def events(repo: Repository) -> list[Event]:
    """Every snapshot and every attempt and restore-test record, as events."""
    out = [_snapshot_event(s.id, s.name, s.kind, s.summary, s.capture) for s in repo.snapshots()]
    for record in list_records(repo):
        if record.get("type") == BACKUP_ATTEMPT and record.get("name"):
            out.append(_attempt_event(record))
        elif record.get("type") == RESTORE_TEST and record.get("name"):
            out.append(_restore_test_event(record))
    return out


def _snapshot_event(
    sid: str, name: str, kind: str, summary: dict[str, Any], capture: dict[str, Any]
) -> Event:
    source = (("source", name),)
    event = Event(
        "snapshot:" + sid,
        counts=[
            Sample("cleancut_snapshots_written", (*source, ("kind", kind)), 1.0),
            Sample("cleancut_bytes_added", source, float(summary.get("bytes_added") or 0)),
        ],
    )
    duration = summary.get("duration_s")
    if isinstance(duration, int | float):
        event.observations.append(
            Sample("cleancut_backup_duration_seconds", (*source, ("kind", kind)), float(duration))
        )
    pause = capture.get("pause_ms")
    if isinstance(pause, int | float):
        event.observations.append(Sample("cleancut_pause_seconds", source, float(pause) / 1000))
    return event


def _attempt_event(record: dict[str, Any]) -> Event:
    source = (("source", str(record["name"])),)
    return Event(
        "record:" + str(record["id"]),
        counts=[
            Sample("cleancut_backup_attempts", source, 1.0),
            Sample("cleancut_backup_failures", source, 0.0 if record.get("ok") else 1.0),
            Sample("cleancut_quiesce_misses", source, 1.0 if record.get("quiesce_missed") else 0.0),
        ],
    )


def _restore_test_event(record: dict[str, Any]) -> Event:
    source = (("source", str(record["name"])),)
    event = Event(
        "record:" + str(record["id"]),
        counts=[
            Sample("cleancut_restore_tests", source, 1.0),
            Sample("cleancut_restore_test_failures", source, 0.0 if record.get("passed") else 1.0),
        ],
    )
    rto = record.get("rto_s")
    if isinstance(rto, int | float):
        event.observations.append(Sample("cleancut_restore_duration_seconds", source, float(rto)))
    return event


def gauges(repo: Repository, sources: list[SourceHealth], now: datetime) -> list[Sample]:
    """The state now, per source, as status judged it."""
    out = [
        Sample("cleancut_metrics_generated_timestamp_seconds", (), now.timestamp()),
        Sample("cleancut_chain_cap_seconds", (), CHAIN_CAP),
    ]
    snaps = repo.snapshots()
    for h in sources:
        source = (("source", h.name),)
        for kind in ("full", "incremental"):
            times = [s.time for s in snaps if s.name == h.name and s.kind == kind]
            if times:
                newest = max(from_iso(t).timestamp() for t in times)
                out.append(
                    Sample(
                        "cleancut_last_success_timestamp_seconds",
                        (*source, ("kind", kind)),
                        newest,
                    )
                )
        out += [
            Sample("cleancut_snapshots", source, h.snapshots),
            Sample("cleancut_chain_length", source, h.chain_length),
            Sample("cleancut_max_full_age_seconds", source, h.max_full_age_s),
            Sample("cleancut_restore_test_limit_seconds", source, h.restore_test_limit_s),
            Sample("cleancut_quiesce_misses_consecutive", source, h.consecutive_quiesce_misses),
            Sample("cleancut_health_state", source, SEVERITY[h.state]),
            Sample("cleancut_health_reasons", source, len(h.findings)),
        ]
        out += _since(now, source, h)
    return out


def _since(now: datetime, source: Labels, h: SourceHealth) -> list[Sample]:
    """The timestamped facts: status keeps ages, which are `now` minus the time."""
    out: list[Sample] = []
    stamp = now.timestamp()
    if h.chain_age_s is not None:
        out.append(Sample("cleancut_chain_start_timestamp_seconds", source, stamp - h.chain_age_s))
    if h.last_attempt_age_s is not None:
        out.append(
            Sample("cleancut_last_attempt_timestamp_seconds", source, stamp - h.last_attempt_age_s)
        )
        out.append(Sample("cleancut_last_attempt_success", source, float(bool(h.last_attempt_ok))))
    test = h.last_restore_test
    if test is not None:
        out.append(Sample("cleancut_restore_test_passed", source, float(test.passed)))
        tested = from_iso(test.time).timestamp()
        out.append(Sample("cleancut_restore_test_timestamp_seconds", source, tested))
        if test.rto_s is not None:
            out.append(Sample("cleancut_restore_test_rto_seconds", source, float(test.rto_s)))
    if h.last_passing_restore_test_age_s is not None:
        out.append(
            Sample(
                "cleancut_restore_test_last_pass_timestamp_seconds",
                source,
                stamp - h.last_passing_restore_test_age_s,
            )
        )
    return out
