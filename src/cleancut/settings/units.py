"""Units the operator writes: durations ("1h30m", "500ms"), bandwidth ("50Mbit",
"unlimited") and sizes ("512KiB", "1MiB"); each parser has a formatter that its output
reads back through, and every error is a ValueError naming the text and an example.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

HOUR = 3600
DAY = 86400

# --- durations -------------------------------------------------------------

_UNIT_SECONDS: dict[str, Fraction] = {
    "d": Fraction(DAY),
    "h": Fraction(HOUR),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
}
_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_COMPONENT = re.compile(rf"({_NUMBER})(ms|[dhms])")
_DURATION_HELP = "examples: 500ms, 30s, 5m, 1h30m, 7d, or a number of seconds"
MAX_DURATION = 36500 * DAY  # 100 years: anything longer is a typo, not a plan


def check_duration(seconds: float | Fraction, text: object) -> None:
    """ValueError unless 0 <= seconds <= MAX_DURATION (and finite): 1e20 days is a typo."""
    if not (0 <= seconds <= MAX_DURATION):  # NaN fails every comparison
        raise ValueError(
            f"duration {text!r} is out of range: allowed 0s to {MAX_DURATION // DAY}d (100 years)"
        )


def parse_duration(text: str) -> float:
    """Seconds in "500ms", "30s", "5m", "24h", "7d", "1h30m" or a bare number of seconds.

    Components must come largest unit first, each at most once, so a typo like
    "5m5m" is refused rather than silently summed. The sum is exact (Fraction)
    and rounded to float once, so formatting and parsing again gives the same value.
    """
    stripped = text.strip()
    if re.fullmatch(_NUMBER, stripped):
        check_duration(Fraction(stripped), text)
        return float(Fraction(stripped))
    total = Fraction(0)
    position = 0
    order = list(_UNIT_SECONDS)
    last_rank = -1
    for match in _COMPONENT.finditer(stripped):
        rank = order.index(match.group(2))
        if match.start() != position or rank <= last_rank:
            break
        total += Fraction(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
        last_rank = rank
    if not stripped or position != len(stripped):
        raise ValueError(f"not a duration: {text!r} ({_DURATION_HELP})")
    check_duration(total, text)
    return float(total)


def format_duration(seconds: float) -> str:
    """A duration as the operator would write it: "5m", "24h", "1h30m", "7d", "500ms".

    Hours are the largest unit below a week (the table in docs/architecture.md speaks of
    12 h, 72 h); days from a week up. Values that are not whole milliseconds
    fall back to exact decimal seconds, so parse_duration(format_duration(x)) == x.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    millis = round(seconds * 1000) if seconds < 1e15 else None
    if millis is None or millis / 1000 != seconds:
        return _plain_number(seconds) + "s"
    if millis == 0:
        return "0s"
    parts: list[str] = []
    rest = millis
    days_from = 7 * DAY * 1000
    for unit, size in (("d", DAY * 1000), ("h", HOUR * 1000), ("m", 60_000), ("s", 1000)):
        if unit == "d" and millis < days_from:
            continue
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest}ms")
    return "".join(parts)


# --- bandwidth -------------------------------------------------------------

_BANDWIDTH = re.compile(rf"({_NUMBER})\s*(?:([mg])(?:bit(?:/s)?|bps))?", re.IGNORECASE)
_BANDWIDTH_SCALE = {"m": 1, "g": 1000}


def parse_bandwidth(text: str) -> float | None:
    """Mbit/s in "50", "50Mbit", "50 Mbit/s", "50Mbps", "1Gbit"; None for "unlimited"."""
    stripped = text.strip()
    if stripped.lower() == "unlimited":
        return None
    match = _BANDWIDTH.fullmatch(stripped)
    if not match:
        raise ValueError(
            f"not a bandwidth: {text!r} (examples: 50, 50Mbit, 1Gbit, unlimited; unit Mbit/s)"
        )
    unit = (match.group(2) or "m").lower()
    return float(Fraction(match.group(1)) * _BANDWIDTH_SCALE[unit])


def format_bandwidth(mbit: float | None) -> str:
    """Either "100 Mbit/s" or "unlimited", in a form parse_bandwidth reads back."""
    if mbit is None:
        return "unlimited"
    return f"{_plain_number(mbit)} Mbit/s"


def _plain_number(value: float) -> str:
    """Exact decimal digits without an exponent ("1e-05" would not parse back)."""
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


# --- sizes -----------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1 << 20,
    "MB": 10**6,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 10**9,
    "GIB": 1 << 30,
}


def parse_size(text: str) -> int:
    """Bytes in "512KiB", "1MiB", "4M" (binary), "1MB" (decimal) or a bare number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 512KiB, 1MiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
