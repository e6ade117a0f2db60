"""External side effects run once through the ledger, and reconciled on start.

    receipt = once(ledger, key, "payment", lambda: bank.pay(key, 30), amount=30)

`once` records the intent under an idempotency key (derived from the action's
logical position, so a re-run of the same step finds it), runs the action, and
records its receipt, its failure, or `unknown` when the provider did not answer.
A key already in the ledger is never acted on again: `once` returns its receipt,
or raises `InFlight` when the earlier attempt is still unsettled.

An agent restored from a backup starts with `reconcile(ledger, lookup)`: every
action the snapshot recorded in flight is looked up at the provider by its key
(a provider that takes idempotency keys can say whether it received it) and
settled from the answer, instead of being repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ledger import Ledger


class Unanswered(Exception):
    """Raise from an action when the request went out and no answer came back."""


class InFlight(Exception):
    """The key's earlier attempt is unsettled: reconcile it, do not repeat it."""


def once(ledger: Ledger, key: str, kind: str, act: Callable[[], str], **detail: Any) -> str:
    """Run `act` (which returns the provider's receipt id) at most once for `key`."""
    if not ledger.intent(key, kind, **detail):
        known = ledger.get(key) or {}
        if known.get("state") == "receipt":
            return str(known.get("receipt"))
        if known.get("state") == "failed":
            raise RuntimeError(f"action {key} failed earlier: {known.get('error')}")
        raise InFlight(f"action {key} is {known.get('state')}: reconcile it before acting again")
    ledger.started(key)
    try:
        receipt = act()
    except Unanswered:
        ledger.unknown(key)
        raise
    except Exception as exc:
        ledger.failed(key, f"{type(exc).__name__}: {exc}")
        raise
    ledger.receipt(key, receipt)
    return receipt


def reconcile(ledger: Ledger, lookup: Callable[[str], str | None]) -> dict[str, str]:
    """Settle every action in flight by asking the provider about its key.

    `lookup(key)` returns the provider's receipt id when it received the action, None
    when it did not (then the action is `failed` and a re-run of its step acts again).
    Returns what became of each key: "receipt" or "failed".
    """
    settled: dict[str, str] = {}
    for action in ledger.inflight():
        key = action["key"]
        receipt = lookup(key)
        if action["state"] == "intent" and receipt is None:
            ledger.failed(key, "never sent (reconciled on start)")
        elif receipt is None:
            ledger.failed(key, "the provider never received it (reconciled on start)")
        else:
            if action["state"] == "intent":
                ledger.started(key)
            ledger.receipt(key, receipt)
        settled[key] = "failed" if receipt is None else "receipt"
    return settled
