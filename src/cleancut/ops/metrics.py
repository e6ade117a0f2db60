"""Prometheus metrics, computed from the repository: what an alert rule needs."""

from __future__ import annotations

from datetime import datetime

from cleancut import clock
from cleancut.repository.attempts import backup_attempts
from cleancut.repository.repository import Repository

from .health import source_health

STATE_VALUE = {"ok": 0, "warn": 1, "critical": 2}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(repo: Repository, now: datetime) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    health = source_health(repo, now)
    snaps = repo.snapshots()
    attempts = backup_attempts(repo)

    metric(
        "cleancut_last_success_timestamp_seconds",
        "gauge",
        "Time of the newest snapshot, per source and kind.",
    )
    for h in health:
        for kind in ("full", "incremental"):
            mine = [s for s in snaps if s.name == h.name and s.kind == kind]
            if mine:
                newest = max(mine, key=lambda s: s.time)
                ts = clock.from_iso(newest.time).timestamp()
                lines.append(
                    f'cleancut_last_success_timestamp_seconds{{source="{_label(h.name)}",'
                    f'kind="{kind}"}} {ts:.0f}'
                )
    metric("cleancut_backup_attempts_total", "counter", "Recorded backup attempts.")
    metric("cleancut_backup_failures_total", "counter", "Recorded failed backup attempts.")
    for h in health:
        tried = [a for a in attempts if a.get("name") == h.name]
        label = f'source="{_label(h.name)}"'
        lines.append(f"cleancut_backup_attempts_total{{{label}}} {len(tried)}")
        failures = sum(1 for a in tried if not a.get("ok"))
        lines.append(f"cleancut_backup_failures_total{{{label}}} {failures}")
    metric("cleancut_restore_test_passed", "gauge", "1 if the last restore test passed.")
    metric("cleancut_restore_test_rto_seconds", "gauge", "Restore time of the last restore test.")
    for h in health:
        test = h.last_restore_test
        if test is not None:
            label = f'source="{_label(h.name)}"'
            lines.append(f"cleancut_restore_test_passed{{{label}}} {int(test.passed)}")
            if test.rto_s is not None:
                lines.append(f"cleancut_restore_test_rto_seconds{{{label}}} {test.rto_s:.3f}")
    metric(
        "cleancut_quiesce_misses_consecutive",
        "gauge",
        "Backup windows in a row that missed quiesce.",
    )
    metric("cleancut_bytes_added_total", "counter", "Bytes written to the repository by backups.")
    metric("cleancut_backup_duration_seconds", "gauge", "Duration of the newest snapshot's backup.")
    metric("cleancut_health_state", "gauge", "0 ok, 1 warn, 2 critical.")
    for h in health:
        label = f'source="{_label(h.name)}"'
        mine = [s for s in snaps if s.name == h.name]
        added = sum(int(s.summary.get("bytes_added", 0)) for s in mine)
        lines.append(
            f"cleancut_quiesce_misses_consecutive{{{label}}} {h.consecutive_quiesce_misses}"
        )
        lines.append(f"cleancut_bytes_added_total{{{label}}} {added}")
        if mine:
            newest = max(mine, key=lambda s: s.time)
            duration = float(newest.summary.get("duration_s", 0.0))
            lines.append(f"cleancut_backup_duration_seconds{{{label}}} {duration:.3f}")
        lines.append(f"cleancut_health_state{{{label}}} {STATE_VALUE.get(h.state, 2)}")
    return "\n".join(lines) + "\n"
