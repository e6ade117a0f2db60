"""Bandwidth caps: a token bucket in front of the backend, one for uploads, one for downloads.

An agent host shares its uplink with the agent itself, so a backup must not
saturate it. Every byte sent (or received) first takes tokens from a bucket
refilled at the cap; the bucket starts empty and holds at most a fraction of a
second of burst, so the average rate over any transfer of a few seconds stays
at or just under the cap. Whole objects are charged before they are sent: the
cap then bounds the average even though one PUT goes out at line speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from .base import Backend, ObjectInfo

# How much unused capacity may be saved up. The bucket starts empty, so whatever the burst,
# a transfer never averages above the cap from its start; a second of credit keeps a slow
# write (an fsync on a busy disk) from costing the transfer its pace.
BURST_SECONDS = 1.0


class TokenBucket:
    def __init__(
        self,
        mbit_per_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = mbit_per_s * 1_000_000 / 8  # bytes per second
        self.capacity = self.rate * BURST_SECONDS
        self.tokens = 0.0
        self.monotonic, self.sleep = monotonic, sleep
        self.stamp = monotonic()
        self.lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        """Block until `nbytes` may pass. Threads queue in order of arrival (the lock),
        so concurrent uploads share the cap rather than each getting it."""
        with self.lock:
            now = self.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= nbytes
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
            if wait > 0:
                # Sleep holding the lock: the debt is ours, the next caller waits behind it.
                self.sleep(wait)
                self.stamp = self.monotonic()
                self.tokens = 0.0


class ThrottledBackend:
    """A Backend whose transfers respect upload and download caps (None: no cap)."""

    def __init__(
        self, inner: Backend, upload_mbit: float | None, download_mbit: float | None
    ) -> None:
        self.inner = inner
        self.location = inner.location
        self.remote = inner.remote
        self.write_concurrency = inner.write_concurrency
        self.append_only = inner.append_only
        self.upload = TokenBucket(upload_mbit) if upload_mbit else None
        self.download = TokenBucket(download_mbit) if download_mbit else None

    def put(self, name: str, data: bytes) -> None:
        if self.upload:
            self.upload.take(len(data))
        self.inner.put(name, data)

    def put_if_absent(self, name: str, data: bytes) -> bool:
        if self.upload:
            self.upload.take(len(data))
        return self.inner.put_if_absent(name, data)

    def get(self, name: str) -> bytes:
        data = self.inner.get(name)
        if self.download:
            self.download.take(len(data))
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if self.download:
            self.download.take(length)  # charged before the request: the wire sees the cap
        return self.inner.get_range(name, offset, length)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def prefetch(self, name: str, length: int = 0) -> None:
        # Read-ahead fetches whole objects in the background, outside the bucket: under a
        # download cap, reads go through get/get_range only, each one charged.
        if not self.download:
            self.inner.prefetch(name, length)


def set_upload_cap(backend: Backend, mbit: float | None) -> Backend:
    """The backend with its upload cap replaced (the profile a command settled on)."""
    if isinstance(backend, ThrottledBackend):
        backend.upload = TokenBucket(mbit) if mbit else None
        return backend
    return ThrottledBackend(backend, mbit, None) if mbit else backend
