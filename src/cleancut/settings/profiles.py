"""Backup profiles: the operator's parameter stack, and the limits no profile lifts.

A profile names one coherent set of timings (how long a quiesce may take, how
often to checkpoint, how long to keep incrementals ...) so an operator picks a
trade-off instead of tuning eight numbers. Any single value can still be
overridden; the fixed limits below cannot, because restore and retention rely
on them (see docs/architecture.md, "Snapshots, chains and policy").

Durations are float seconds; bandwidth is Mbit/s, None meaning unlimited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from cleancut.journal.frame import MIN_JOURNAL_WINDOW

from .units import (
    DAY,
    HOUR,
    check_duration,
    format_bandwidth,
    format_duration,
    parse_bandwidth,
    parse_duration,
)

CHAIN_CAP = 72 * HOUR
"""A chain (a full and its incrementals) never spans more than this: restore cost is bounded."""

MAX_RESTORE_TEST_INTERVAL = 7 * DAY
"""A restore is tested at least weekly; a setting may shorten this, never lengthen it."""

MISS_ALERT_THRESHOLD = 3
"""Consecutive backup windows that miss quiesce before an alert is raised."""


@dataclass(frozen=True)
class Profile:
    """Every tunable of a backup schedule; validated on construction (and on replace())."""

    quiesce_timeout: float
    memory_flush_interval: float
    checkpoint_cadence: float
    incremental_sync_interval: float
    bandwidth_cap_mbit: float | None
    max_full_age: float
    incremental_retention: float
    horizon: float
    restore_test_interval: float = MAX_RESTORE_TEST_INTERVAL

    def __post_init__(self) -> None:
        for name in field_names():
            value = getattr(self, name)
            check_value(name, value)
            if value is not None:
                # The table is written with ints; callers (and JSON) always see floats.
                object.__setattr__(self, name, float(value))


def field_names() -> tuple[str, ...]:
    """The overridable settings, in the order they are shown."""
    return tuple(f.name for f in fields(Profile))


BANDWIDTH_FIELD = "bandwidth_cap_mbit"


def get_profile(name: str) -> Profile:
    """The named profile; ValueError listing the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {name!r} (known: {known})") from None


MAX_COUNT = 1_000_000  # keep rules and other counts: more snapshots than a repository holds


def check_count(value: int, what: str) -> None:
    """ValueError unless 0 <= value <= MAX_COUNT."""
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{what} {value} is out of range: allowed 0 to {MAX_COUNT:,}")


# --- one setting at a time -------------------------------------------------


def parse_value(name: str, raw: object) -> float | None:
    """A setting from text or a TOML number, checked against its limits.

    Numbers are seconds (or Mbit/s for the bandwidth cap). Booleans are refused
    even though Python counts them as ints: `max_full_age = true` is a mistake.
    """
    if name not in field_names():
        raise ValueError(f"unknown setting {name!r} (known: {', '.join(field_names())})")
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"expected a string or a number, got {type(raw).__name__}")
    if isinstance(raw, str):
        value = parse_bandwidth(raw) if name == BANDWIDTH_FIELD else parse_duration(raw)
    else:
        value = float(raw)
        if name != BANDWIDTH_FIELD:
            check_duration(value, raw)
    check_value(name, value)
    return value


def check_value(name: str, value: float | None) -> None:
    """The limits every setting must respect, whatever layer it came from."""
    if name == BANDWIDTH_FIELD:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("the bandwidth cap must be above 0 Mbit/s (or unlimited)")
        return
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a duration above 0")
    if name == "max_full_age" and value > CHAIN_CAP:
        raise ValueError(
            f"max_full_age {format_duration(value)} is beyond the fixed "
            f"{format_duration(CHAIN_CAP)} chain cap (no profile or setting lifts it)"
        )
    if name == "restore_test_interval" and value > MAX_RESTORE_TEST_INTERVAL:
        raise ValueError(
            f"restore_test_interval {format_duration(value)} is longer than the fixed "
            f"maximum of {format_duration(MAX_RESTORE_TEST_INTERVAL)} "
            "(a restore is tested at least weekly; shorter is allowed)"
        )
    if name == "incremental_retention" and value < MIN_JOURNAL_WINDOW:
        raise ValueError(
            f"incremental_retention {format_duration(value)} is shorter than the fixed "
            f"rolling journal of {format_duration(MIN_JOURNAL_WINDOW)}"
        )


def format_value(name: str, value: float | None) -> str:
    """A setting in human form: "5m", "24h", "100 Mbit/s", "unlimited"."""
    if name == BANDWIDTH_FIELD:
        return format_bandwidth(value)
    assert value is not None  # only the bandwidth cap may be unlimited
    return format_duration(value)


# --- the three profiles of docs/architecture.md (validated as they are built) ----------

PROFILES: dict[str, Profile] = {
    "conservative": Profile(
        quiesce_timeout=30,
        memory_flush_interval=5,
        checkpoint_cadence=60,
        incremental_sync_interval=30,
        bandwidth_cap_mbit=50,
        max_full_age=12 * HOUR,
        incremental_retention=24 * HOUR,
        horizon=120,
    ),
    "standard": Profile(
        quiesce_timeout=60,
        memory_flush_interval=15,
        checkpoint_cadence=5 * 60,
        incremental_sync_interval=60,
        bandwidth_cap_mbit=100,
        max_full_age=24 * HOUR,
        incremental_retention=72 * HOUR,
        horizon=60,
    ),
    "permissive": Profile(
        quiesce_timeout=300,
        memory_flush_interval=60,
        checkpoint_cadence=15 * 60,
        incremental_sync_interval=300,
        bandwidth_cap_mbit=None,
        max_full_age=72 * HOUR,
        incremental_retention=168 * HOUR,
        horizon=30,
    ),
}

DEFAULT_PROFILE = "standard"
