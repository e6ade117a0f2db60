"""A mock provider for outbound actions, and the thread that settles accepted ones.

A send either returns a receipt id at once, or (a fraction of tool sends) is
only "accepted": the receipt arrives 10–200 ms later on the settler thread,
outside any turn, as a real provider's webhook would. The first `stuck`
accepted sends never settle, so they stay `started` in the ledger: the
external consistency horizon has to give up on them.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    receipt: str | None  # the receipt id when the provider answered at once
    delay: float | None  # seconds until an accepted send settles; None: never


class MockProvider:
    """Decides each send's outcome from (seed, key): deterministic apart from timing."""

    def __init__(self, seed: int, async_fraction: float = 0.0, stuck: int = 0) -> None:
        self.seed = seed
        self.async_fraction = async_fraction
        self._stuck_left = stuck
        self._lock = threading.Lock()

    def _unit(self, key: str, salt: str) -> float:
        h = hashlib.sha256(f"{self.seed}\x1f{salt}\x1f{key}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def receipt_id(self, key: str) -> str:
        return "rcpt_" + hashlib.sha256(f"{self.seed}\x1f{key}".encode()).hexdigest()[:20]

    def send(self, key: str, may_defer: bool) -> Sent:
        if not may_defer or self._unit(key, "async") >= self.async_fraction:
            return Sent(self.receipt_id(key), None)
        with self._lock:
            stuck = self._stuck_left > 0
            self._stuck_left -= stuck
        if stuck:
            return Sent(None, None)
        return Sent(None, 0.010 + 0.190 * self._unit(key, "delay"))


class Settler:
    """Runs callbacks at their due time on one background thread (not inside a turn)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sim-settler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), callback))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, _, callback = heapq.heappop(self._heap)
            callback()
