"""Reading ahead: whole objects fetched in the background after a prefetch hint, within a
memory budget (the S3 backend's restore reads; any backend with a whole-object fetch can
use it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

READAHEAD_BYTES = 128 << 20  # memory for objects fetched ahead of their reads
# A pack closes only once a blob takes it past the target size (16 MiB by default, plus
# one chunk of up to 4 MiB), so whole-object read-ahead must cover that, or it never works.
READAHEAD_OBJECT_MAX = 32 << 20  # a larger object is read by ranges, never whole
READAHEAD_WAIT = 120.0  # seconds a read waits for a fetch in flight before reading by range


class ReadAhead:
    """Whole objects fetched in the background after a prefetch hint, within a memory budget.

    A restore reads many small ranges of the same pack; against an object store
    each one is a round trip. One whole GET started early turns them into memory
    reads. Hints queue (up to `queue_max` names) in the order given; a fetch
    starts when memory allows, counting each fetch in flight at the largest size
    it may have. An object larger than `object_max` is abandoned as soon as its
    size is known. To make room, only objects already read are evicted (least
    recently read first): evicting one fetched but not yet read would only
    download it twice. A hinted object read before its fetch started leaves the
    queue (it is being read by ranges already). A failed fetch is forgotten; the
    read then falls back to a ranged GET, with its retries.
    """

    def __init__(
        self,
        fetch: Callable[[str, int], bytes | None],
        budget: int = READAHEAD_BYTES,
        object_max: int = READAHEAD_OBJECT_MAX,
        queue_max: int = 256,
    ) -> None:
        self._fetch = fetch
        self._budget = budget
        self._object_max = object_max
        self._queue_max = queue_max
        self._lock = threading.Lock()
        self._queued: dict[str, None] = {}  # hinted, not yet fetching (insertion order)
        self._loading: dict[str, threading.Event] = {}
        self._stale: set[str] = set()  # rewritten or deleted while loading: discard
        self._unread: dict[str, bytes] = {}
        self._read: OrderedDict[str, bytes] = OrderedDict()  # least recently read first
        self._held = 0  # bytes in _unread and _read

    def hint(self, name: str) -> None:
        with self._lock:
            known = (self._queued, self._loading, self._unread, self._read)
            if any(name in group for group in known) or len(self._queued) >= self._queue_max:
                return
            self._queued[name] = None
            starts = self._next_fetches()
        self._start(starts)

    def _next_fetches(self) -> list[tuple[str, threading.Event]]:
        """Move queued names to loading while the budget allows (called under the lock)."""
        starts = []
        while self._queued:
            need = (len(self._loading) + 1) * self._object_max
            while self._held + need > self._budget and self._read:
                self._held -= len(self._read.popitem(last=False)[1])
            if self._held + need > self._budget:
                break
            name = next(iter(self._queued))
            del self._queued[name]
            done = self._loading[name] = threading.Event()
            starts.append((name, done))
        return starts

    def _start(self, starts: list[tuple[str, threading.Event]]) -> None:
        for name, done in starts:
            # A daemon thread: a hint must never keep a finished command from exiting.
            threading.Thread(target=self._load, args=(name, done), daemon=True).start()

    def _load(self, name: str, done: threading.Event) -> None:
        try:
            data = self._fetch(name, self._object_max)
        except Exception:
            data = None
        with self._lock:
            del self._loading[name]
            if name in self._stale:
                self._stale.discard(name)
            elif data is not None:
                self._unread[name] = data
                self._held += len(data)
            starts = self._next_fetches()
        done.set()
        self._start(starts)

    def read(self, name: str) -> bytes | None:
        """The whole object if it is here or arriving (waits for a fetch in flight)."""
        with self._lock:
            self._queued.pop(name, None)
            loading = self._loading.get(name)
        if loading is not None and not loading.wait(READAHEAD_WAIT):
            return None
        with self._lock:
            data = self._unread.pop(name, None)
            if data is not None:
                self._read[name] = data  # now evictable: room for the next fetch
                starts = self._next_fetches()
            else:
                starts = []
                data = self._read.get(name)
                if data is not None:
                    self._read.move_to_end(name)
        self._start(starts)
        return data

    def forget(self, name: str) -> None:
        """The object changed or went: never serve what was fetched of it."""
        with self._lock:
            self._queued.pop(name, None)
            if name in self._loading:
                self._stale.add(name)
            data = self._unread.pop(name, None) or self._read.pop(name, None)
            if data is not None:
                self._held -= len(data)

    @property
    def held(self) -> int:
        """Bytes held now (for tests and diagnostics)."""
        with self._lock:
            return self._held


# --- the backend ------------------------------------------------------------------------
