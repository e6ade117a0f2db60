"""How a source's health reads as words: the figures `status` prints and the status page
shows, written once so the terminal and the page never disagree."""

from __future__ import annotations

from cleancut import clock

from .health import SourceHealth


def duration_text(seconds: float) -> str:
    """A restore time: sub-second precision while it is short, like an age once it is long."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    return f"{seconds:.0f}s" if seconds < 120 else clock.age_text(seconds)


def success_rate_text(h: SourceHealth, window: str, none: str) -> str:
    """`85% (6/7)` over `window` ('7d', '30d'); `none` when no attempt fell in it."""
    rate = h.success_rate.get(window)
    if rate is None:
        return none
    ok = round(rate * h.attempts[window])
    return f"{rate * 100:.0f}% ({ok}/{h.attempts[window]})"


def restore_test_text(h: SourceHealth) -> str:
    """`passed 2h ago, RTO 0.42s`, `FAILED ...`, or `never`."""
    test = h.last_restore_test
    if test is None:
        return "never"
    result = "passed" if test.passed else "FAILED"
    rto = f", RTO {duration_text(test.rto_s)}" if test.rto_s is not None else ""
    return f"{result} {clock.age_text(test.age_s)} ago{rto}"
