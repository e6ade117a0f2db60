"""The protocol v1 runtime: an agent on a Unix socket (docs/protocol.md).

Each step is one request on the control socket (hot/control.py), with the step's
timeout as its deadline; what a silent, closed or refusing agent means is said here
in the words the operator reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cleancut.errors import QuiesceMissed

from .control import AgentClient, AgentClosed, AgentTimeout
from .runtime import AgentRuntime, LeaseLost, RuntimeContext

QUIESCE_GRACE_S = 2.0  # beyond timeout_ms, for the agent's reply to travel


class ProtocolV1Runtime(AgentRuntime):
    def __init__(self, address: str, context: RuntimeContext) -> None:
        self.client = AgentClient(address)

    def connect(self, timeout: float) -> dict[str, Any]:
        self.client.connect()
        hello = self.client.hello()
        self.waits_horizon = "inflight_wait" in (hello.get("capabilities") or [])
        return {k: hello.get(k) for k in ("agent", "protocol", "capabilities")}

    def peer_pid(self) -> int | None:
        return self.client.peer_pid()

    def quiesce(self, timeout: float, lease: float) -> None:
        try:
            reply = self.client.request(
                "quiesce",
                timeout=timeout + QUIESCE_GRACE_S,
                timeout_ms=int(timeout * 1000),
                lease_ms=int(lease * 1000),
            )
        except AgentTimeout:
            raise QuiesceMissed(
                f"quiesce missed: the agent did not answer within {timeout:g}s"
            ) from None
        except AgentClosed as exc:
            raise QuiesceMissed(f"quiesce missed: {exc}") from None
        if not reply["ok"]:
            raise QuiesceMissed(
                f"quiesce missed: the agent answered {reply['error']!r} (timeout {timeout:g}s)"
            )

    def flush(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self.client.request("flush", timeout=timeout)
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(f"quiesce missed: flush failed: {exc}") from None
        if not reply["ok"]:
            raise QuiesceMissed(f"quiesce missed: the agent could not flush ({reply['error']})")
        return reply

    def inflight(self, timeout: float) -> list[dict[str, Any]]:
        return self._inflight(timeout)

    def inflight_settled(self, wait: float, timeout: float) -> list[dict[str, Any]]:
        # The reply may take the whole wait: its deadline is the wait plus the step's.
        return self._inflight(wait + timeout, wait_ms=int(wait * 1000))

    def _inflight(self, timeout: float, **fields: Any) -> list[dict[str, Any]]:
        try:
            reply = self.client.request("inflight", timeout=timeout, **fields)
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(f"quiesce missed: inflight failed: {exc}") from None
        # An error reply is read as nothing in flight (docs/protocol.md, step 4).
        return list(reply["inflight"]) if reply["ok"] else []

    def renew(self, timeout: float, lease: float) -> None:
        try:
            reply = self.client.request("renew", timeout=timeout, lease_ms=int(lease * 1000))
        except (AgentTimeout, AgentClosed) as exc:
            raise LeaseLost(str(exc), answered=False) from None
        if not reply["ok"]:
            raise LeaseLost(str(reply["error"]), answered=True)

    # Requests on one connection are answered in order (docs/protocol.md): a resume
    # written right behind the final renew is handled right after it is answered.
    pipelines_resume = True

    def renew_then_resume(self, timeout: float, lease: float, sent: Callable[[], None]) -> bool:
        try:
            reply, resumed = self.client.request_then(
                "renew", {"lease_ms": int(lease * 1000)}, "resume", timeout, sent
            )
        except (AgentTimeout, AgentClosed) as exc:
            raise LeaseLost(str(exc), answered=False) from None
        if not reply["ok"]:
            raise LeaseLost(str(reply["error"]), answered=True)
        return resumed

    def resume(self, timeout: float) -> None:
        self.client.request("resume", timeout=timeout)

    def close(self) -> None:
        self.client.close()
