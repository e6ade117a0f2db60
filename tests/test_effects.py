"""Side effects run once by their idempotency key, and reconciled on start (sdk/effects.py).

The ledger is a real file; the provider is a dict that records every request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cleancut.sdk.effects import InFlight, Unanswered, once, reconcile
from cleancut.sdk.ledger import Ledger


class Provider:
    def __init__(self) -> None:
        self.taken: dict[str, str] = {}
        self.requests: list[str] = []
        self.silent = False

    def send(self, key: str) -> str:
        self.requests.append(key)
        self.taken.setdefault(key, f"r-{len(self.taken)}")
        if self.silent:
            raise Unanswered(key)
        return self.taken[key]


def test_a_key_acts_once_and_answers_with_its_first_receipt(tmp_path: Path) -> None:
    ledger, provider = Ledger(tmp_path / "ledger.jsonl"), Provider()
    first = once(ledger, "k1", "email", lambda: provider.send("k1"))
    again = once(ledger, "k1", "email", lambda: provider.send("k1"))
    assert first == again == "r-0"
    assert provider.requests == ["k1"]
    reopened = Ledger(tmp_path / "ledger.jsonl")  # the file says the same after a restart
    assert once(reopened, "k1", "email", lambda: provider.send("k1")) == "r-0"
    assert provider.requests == ["k1"]


def test_an_unanswered_action_is_in_flight_until_reconciled(tmp_path: Path) -> None:
    ledger, provider = Ledger(tmp_path / "ledger.jsonl"), Provider()
    provider.silent = True
    with pytest.raises(Unanswered):
        once(ledger, "k1", "payment", lambda: provider.send("k1"), amount=3)
    with pytest.raises(Unanswered):
        once(ledger, "k2", "payment", lambda: provider.send("k2"), amount=4)
    ledger.intent("k3", "payment")  # a crash before the request went out
    with pytest.raises(InFlight):  # never acted on again while unsettled
        once(ledger, "k1", "payment", lambda: provider.send("k1"))
    assert {a["key"]: a["state"] for a in ledger.inflight()} == {
        "k1": "unknown", "k2": "unknown", "k3": "intent"}
    del provider.taken["k2"]  # the provider lost k2: it never arrived
    restored = Ledger(tmp_path / "ledger.jsonl")
    assert reconcile(restored, provider.taken.get) == {
        "k1": "receipt", "k2": "failed", "k3": "failed"}
    assert restored.inflight() == []
    assert provider.requests == ["k1", "k2"]  # reconciling asked, never sent
    assert (restored.get("k1") or {})["receipt"] == "r-0"


def test_a_refused_action_is_failed_and_raised(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")

    def refuse() -> str:
        raise PermissionError("card declined")

    with pytest.raises(PermissionError):
        once(ledger, "k1", "payment", refuse)
    assert (ledger.get("k1") or {})["state"] == "failed"
    with pytest.raises(RuntimeError, match="failed earlier"):
        once(ledger, "k1", "payment", refuse)
