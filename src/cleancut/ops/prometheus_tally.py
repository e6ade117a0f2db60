"""Counters that never go down although the events they count are deleted.

The counters and histograms are sums over the repository's snapshots and records
(metrics.py). `forget` deletes snapshots and prune compacts records older than 31 days,
so a plain sum would drop, and Prometheus reads a drop as a counter reset: `rate()` and
`increase()` would then count the whole remaining total as new. The tally remembers, on
this host, the events it last saw (beside the cache, `metrics-tally.json.zst`); an event
that is gone from the repository moves its increments into a base that stays (and its id
to a list of the vanished, so it is not counted twice if it comes back). The value exposed
is base + the sum over the events present: exact, and monotonic on this host.

A fresh host (or a lost tally file) starts from the events present: its counters are
smaller, a reset as when any exporter restarts. A flock serialises the daemon, `tick`
and other commands writing the tally at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from cleancut.fsio.safeio import replace_file

from .metrics import Event, Labels, additive

TALLY_FILE = "metrics-tally.json.zst"  # zstd: event lists compress ~20x
TALLY_VERSION = 1
GONE_KEPT = 50_000  # ids of vanished events remembered (oldest forgotten first)

Totals = dict[tuple[str, Labels], float]


def settle(directory: Path, present: list[Event]) -> Totals:
    """The counters' totals: base (of every vanished event) + the present events'.

    Records this call's events as the ones seen, for the next call. An event that comes
    back after it vanished (a record unreadable once) is already in the base: it is
    not counted again while its id is among the last GONE_KEPT that vanished."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory / (TALLY_FILE + ".lock")):
            base, seen, gone = _load(directory / TALLY_FILE)
            current = {e.id: e for e in present if e.id not in gone}
            for event_id, event in seen.items():
                if event_id not in current and event_id not in gone:
                    _add(base, additive(event))
                    gone[event_id] = None
            while len(gone) > GONE_KEPT:
                del gone[next(iter(gone))]
            _save(directory / TALLY_FILE, base, current, gone)
    except OSError:
        # A cache directory this process cannot write (read-only, full): the sums over
        # what the repository holds, as a fresh host would export them.
        base, current = {}, {e.id: e for e in present}
    totals = dict(base)
    for event in current.values():
        _add(totals, additive(event))
    return totals


def _add(into: Totals, increments: Totals) -> None:
    for key, value in increments.items():
        into[key] = into.get(key, 0.0) + value


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> tuple[Totals, dict[str, Event], dict[str, None]]:
    """The saved base and events; a missing or unreadable file is an empty tally."""
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
        if doc.get("version") != TALLY_VERSION:
            return {}, {}, {}
        base = {
            (str(m), tuple((str(k), str(v)) for k, v in labels)): float(x)
            for m, labels, x in doc["base"]
        }
        seen = {str(i): Event.from_json(str(i), e) for i, e in doc["events"].items()}
        gone = dict.fromkeys(str(i) for i in doc["gone"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zstandard.ZstdError):
        return {}, {}, {}
    return base, seen, gone


def _save(path: Path, base: Totals, events: dict[str, Event], gone: dict[str, None]) -> None:
    doc: dict[str, Any] = {
        "version": TALLY_VERSION,
        "base": [[m, [list(p) for p in labels], x] for (m, labels), x in sorted(base.items())],
        "events": {i: e.to_json() for i, e in events.items()},
        "gone": list(gone),
    }
    data = json.dumps(doc, separators=(",", ":")).encode()
    replace_file(path, zstandard.ZstdCompressor(level=3).compress(data))
