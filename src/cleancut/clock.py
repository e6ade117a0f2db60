"""The time, injectable: policy decisions depend on it and tests must not sleep.

`CLEANCUT_NOW` (ISO 8601, e.g. 2026-11-26T12:00:00Z) fixes "now" for a whole
process; it exists for tests and for replaying what a schedule would have done.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from cleancut.errors import UsageError


def now() -> datetime:
    fixed = os.environ.get("CLEANCUT_NOW")
    if fixed:
        return parse_time(fixed, reference=datetime.now(UTC))
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_since(when: str, now: datetime) -> float:
    """How long before `now` the ISO time `when` was (negative if it is later: clock skew)."""
    return (now - from_iso(when)).total_seconds()


_MAX_AGO = 36500 * 86400  # "N ago" further back than 100 years is a typo
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, reference: datetime | None = None) -> datetime:
    """ISO 8601 ("2026-11-26T10:00", a date, with or without zone: UTC) or "2h ago"."""
    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s+ago", text)
    if match:
        ref = reference or now()
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if seconds > _MAX_AGO:
            raise UsageError(f"not a time: {text!r} (at most 36500d ago: 100 years)")
        return ref - timedelta(seconds=seconds)
    try:
        return from_iso(text)
    except ValueError as exc:
        raise UsageError(
            f"not a time: {text!r} (use ISO 8601 like 2026-11-26T10:00Z, or '2h ago')"
        ) from exc


def age_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
