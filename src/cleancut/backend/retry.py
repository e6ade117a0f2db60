"""Retrying transient failures: capped exponential backoff with full jitter, within a time budget.

A remote backend meets failures that go away by themselves (a dropped
connection, a 503, a throttling answer) and failures that never will (refused
credentials, a missing bucket). The first kind is retried here; the second is
raised at once, because waiting cannot fix it and the operator should hear
about it now.

The budget is a time, not a count: what an operator can reason about is "a
backup survives an outage of up to a minute", whatever the attempts cost. Full
jitter (a random pause between 0 and the capped exponential) keeps many
clients that failed together from retrying together.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from cleancut.errors import UsageError

T = TypeVar("T")

BUDGET_ENV = "CLEANCUT_S3_RETRY_BUDGET"


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 0.2  # seconds: the first pause is drawn from [0, base]
    cap: float = 10.0  # seconds: no single pause is drawn from a wider range
    budget: float = 60.0  # seconds from the first attempt after which no new attempt starts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The default policy, with the budget overridable (tests shorten it to seconds)."""
        raw = (os.environ if environ is None else environ).get(BUDGET_ENV, "").strip()
        if not raw:
            return cls()
        try:
            budget = float(raw)
        except ValueError:
            budget = -1.0
        if not 0 <= budget <= 3600:
            raise UsageError(
                f"{BUDGET_ENV} must be a number of seconds from 0 to 3600, not {raw!r}"
            )
        return cls(budget=budget)

    def pause(self, failures: int, rng: random.Random | None = None) -> float:
        """The pause after the `failures`-th consecutive failure (1-based), with full jitter."""
        ceiling = min(self.cap, self.base * 2 ** (failures - 1))
        return (rng or random).uniform(0, ceiling)


class RetriesExhausted(Exception):
    """Every attempt within the budget failed transiently; `last` is the final failure."""

    def __init__(self, attempts: int, elapsed: float, last: BaseException) -> None:
        super().__init__(f"{attempts} attempts over {elapsed:.1f}s: {last}")
        self.attempts = attempts
        self.elapsed = elapsed
        self.last = last


def retry(
    call: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call until it succeeds, a failure is not transient, or the budget is spent.

    The last pause is shortened so that one final attempt starts at the end of
    the budget rather than giving up early; the whole call therefore lasts at
    most the budget plus one attempt.
    """
    start = clock()
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures += 1
            left = policy.budget - (clock() - start)
            if left <= 0:
                raise RetriesExhausted(failures, clock() - start, exc) from exc
            sleep(min(policy.pause(failures, rng), left))
