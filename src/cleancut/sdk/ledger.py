"""The ledger of external actions: what the agent did to the outside world.

A backup that believes an email unsent makes the restored agent send it twice.
So every external action goes through the ledger, keyed by an idempotency key
derived from the action's logical position (never from an attempt), and moves
through states that are each made durable (one fsync'd JSON line) before the
next step:

    intent -> started -> receipt         (done, with the provider's receipt id)
                      -> failed          (the provider refused; safe to retry)
                      -> unknown         (sent, no answer: reconcile, do not resend blindly)

`intent` and `started` are *unsettled*: a backup waits for them (the external
consistency horizon) and records those still open in the snapshot, so the
restored agent can reconcile rather than repeat them.

While the agent is quiesced the SDK *holds* the ledger: transitions reported
by threads outside a turn (an asynchronous receipt) are kept in memory, visible
to `inflight`, and written on the next flush or on resume, so the file never
changes under a capture.

Every transition wakes the threads waiting in `wait_settled()`: the SDK answers an
`inflight` request with `wait_ms` the moment the last `intent` or `started` action
settles, instead of the backup side polling for it.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cleancut import jsonparse
from cleancut.errors import NotOurs

from .wire import INFLIGHT_STATES, UNSETTLED

STATES = ("intent", "started", "unknown", "receipt", "failed")
TRANSITIONS: dict[str | None, tuple[str, ...]] = {
    None: ("intent",),
    "intent": ("started", "failed"),
    "started": ("receipt", "failed", "unknown"),
    "unknown": ("receipt", "failed"),
    "receipt": (),
    "failed": (),
}


# Every line the ledger writes begins so (json.dumps of a dict whose first key is "key").
_LINE_START = b'{"key":'


class LedgerError(Exception):
    """A transition the ledger's state machine does not allow (a bug in the agent)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Ledger:
    """An append-only JSONL file of action transitions, with the current state in memory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified on every transition
        self._actions: dict[str, dict[str, Any]] = {}
        self._held = False
        self._pending: list[bytes] = []
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _load(self) -> None:
        """Rebuild the state from the file; a torn last line (a crash mid-write) is cut off."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        good = data.rfind(b"\n") + 1
        entries = []
        for line in data[:good].splitlines():
            if line.strip():
                entries.append(self._entry(line))
        torn = data[good:]
        if torn and not _LINE_START.startswith(torn[: len(_LINE_START)]):
            raise NotOurs(f"ledger {self.path}: its last line is not a ledger line; not ours")
        # Only now that the file reads as a ledger is its torn tail cut off.
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        for entry in entries:
            self._apply(entry)

    def _entry(self, line: bytes) -> dict[str, Any]:
        """One complete ledger line; NotOurs when the file holds something else."""
        try:
            entry = jsonparse.loads(line)
        except ValueError:
            entry = None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and isinstance(entry.get("state"), str)
            and "t" in entry
        ):
            raise NotOurs(
                f"ledger {self.path} holds a line that is not a ledger entry: not ours, "
                "left untouched; give the Ledger a path of its own"
            )
        return entry

    def _apply(self, entry: dict[str, Any]) -> None:
        action = self._actions.setdefault(entry["key"], {"key": entry["key"]})
        action.update({k: v for k, v in entry.items() if k != "t"})
        action["since"] = entry["t"]

    def _transition(self, key: str, state: str, new: bool = False, **fields: Any) -> bool:
        with self._lock:
            current = self._actions.get(key)
            if new and current is not None:
                return False
            before = current["state"] if current else None
            if state not in TRANSITIONS[before]:
                raise LedgerError(f"action {key}: {before or 'new'} -> {state} is not allowed")
            entry = {"key": key, "state": state, "t": _now(), **fields}
            if current is None:
                entry.setdefault("kind", "action")
            self._apply(entry)
            line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
            if self._held:
                self._pending.append(line)
            else:
                self._write(line)
            self._settled.notify_all()
            return True

    def _write(self, data: bytes) -> None:
        os.write(self._fd, data)
        os.fsync(self._fd)

    # --- the agent's side -------------------------------------------------

    def intent(self, key: str, kind: str, **detail: Any) -> bool:
        """Record the intent to act; False if the key is known (the action must not be repeated)."""
        return self._transition(key, "intent", new=True, kind=kind, **detail)

    def started(self, key: str) -> None:
        self._transition(key, "started")

    def receipt(self, key: str, receipt_id: str) -> None:
        self._transition(key, "receipt", receipt=receipt_id)

    def unknown(self, key: str) -> None:
        self._transition(key, "unknown")

    def failed(self, key: str, error: str) -> None:
        self._transition(key, "failed", error=error)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            action = self._actions.get(key)
            return dict(action) if action else None

    def inflight(self) -> list[dict[str, Any]]:
        """Actions in intent, started or unknown, as the protocol's `inflight` reports them."""
        with self._lock:
            return self._inflight_locked()

    def wait_settled(self, timeout: float) -> list[dict[str, Any]]:
        """Wait until no action is `intent` or `started`, at most `timeout` seconds, and
        return what is in flight then (the protocol's `inflight` with `wait_ms`). Woken by
        the transition that settles the last one, from whichever thread reports it."""
        with self._settled:
            self._settled.wait_for(self._all_settled, max(0.0, timeout))
            return self._inflight_locked()

    def settled(self) -> bool:
        """Whether no action is `intent` or `started`."""
        with self._settled:
            return self._all_settled()

    def _all_settled(self) -> bool:
        return not any(a["state"] in UNSETTLED for a in self._actions.values())

    def _inflight_locked(self) -> list[dict[str, Any]]:
        return [
            {"key": a["key"], "kind": a.get("kind", "action"), "state": a["state"],
             "since": a["since"]}
            for a in self._actions.values()
            if a["state"] in INFLIGHT_STATES
        ]

    # --- the SDK's side ---------------------------------------------------

    def hold(self) -> None:
        """Keep further transitions in memory (the agent is quiesced)."""
        with self._lock:
            self._held = True

    def write_pending(self) -> None:
        """Make the transitions held so far durable (flush), staying held."""
        with self._lock:
            if self._pending:
                self._write(b"".join(self._pending))
                self._pending.clear()

    def release(self) -> None:
        """Write what was held and go back to writing each transition at once (resume)."""
        with self._lock:
            if self._pending:
                self._write(b"".join(self._pending))
                self._pending.clear()
            self._held = False

    def close(self) -> None:
        self.release()
        os.close(self._fd)
