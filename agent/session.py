"""One quiesce session with a live agent: quiesce, flush, horizon, (capture), renew, resume.

The capture itself is the caller's, passed in as a function, so this module is
only the protocol dance and its budget: every step has a deadline, the lease is
renewed in the background while the capture runs, a final `renew` proves the
lease held through the capture, and `resume` is sent in a `finally`, whatever
happened (an exception, Ctrl-C). The pause the agent sees runs from the quiesce
acknowledgement to the resume.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..store.errors import QuiesceMissed
from .control import AgentClient, AgentClosed, AgentTimeout
from .wire import UNSETTLED

T = TypeVar("T")

QUIESCE_GRACE_S = 2.0  # beyond timeout_ms, for the agent's reply to travel
HORIZON_POLL_S = 0.05
MIN_LEASE_S = 3.0
# Closing the connection resumes an SDK agent too, so a silent agent is not waited on long.
RESUME_REPLY_S = 2.0


@dataclass
class SessionReport:
    agent: dict[str, Any] = field(default_factory=dict)  # hello: name, protocol, capabilities
    steps_ms: dict[str, float] = field(default_factory=dict)
    pause_ms: float | None = None
    inflight: list[dict[str, Any]] = field(default_factory=list)
    horizon_reached: bool | None = None  # every unsettled action settled in the horizon
    peer_pid: int | None = None
    # The journal's last durable record at the final flush: the snapshot is the state
    # at this sequence number (agents that journal; None otherwise).
    journal_seq: int | None = None


class _Renewer:
    """Renews the lease every third of it while the capture runs on the main thread."""

    def __init__(self, client: AgentClient, lease_s: float) -> None:
        self.client = client
        self.lease_s = lease_s
        self.stop = threading.Event()
        self.lost: str | None = None
        self.thread = threading.Thread(target=self._run, name="cleancut-renew", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.lease_s / 3):
            try:
                reply = self.client.request("renew", lease_ms=int(self.lease_s * 1000))
            except (AgentTimeout, AgentClosed) as exc:
                self.lost = str(exc)
                return
            if not reply.get("ok"):
                self.lost = str(reply.get("error"))
                return

    def __enter__(self) -> _Renewer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def quiesced(
    address: str,
    quiesce_timeout: float,
    horizon: float,
    capture: Callable[[], T],
    report: SessionReport,
    lease: float = 10.0,
) -> T:
    """Run `capture` while the agent at `address` is quiesced and flushed; fill `report`.

    Raises QuiesceMissed when the agent does not confirm quiesce in time, cannot
    flush, or its lease ended before the capture finished; the agent runs again
    in every case.
    """
    lease = max(lease, MIN_LEASE_S)
    client = AgentClient(address)
    clock = _Steps(report)
    with clock("hello"):
        client.connect()
        hello = client.hello()
    report.agent = {k: hello.get(k) for k in ("agent", "protocol", "capabilities")}
    report.peer_pid = client.peer_pid()
    acknowledged: float | None = None
    try:
        with clock("quiesce"):
            try:
                reply = client.request(
                    "quiesce",
                    timeout=quiesce_timeout + QUIESCE_GRACE_S,
                    timeout_ms=int(quiesce_timeout * 1000),
                    lease_ms=int(lease * 1000),
                )
            except AgentTimeout:
                raise QuiesceMissed(
                    f"quiesce missed: the agent did not answer within {quiesce_timeout:g}s"
                ) from None
            except AgentClosed as exc:
                raise QuiesceMissed(f"quiesce missed: {exc}") from None
            if not reply.get("ok"):
                raise QuiesceMissed(
                    f"quiesce missed: the agent answered {reply.get('error')!r} "
                    f"(timeout {quiesce_timeout:g}s)"
                )
        acknowledged = time.monotonic()
        with _Renewer(client, lease) as renewer:
            with clock("flush"):
                _flush(client)
            with clock("horizon"):
                report.inflight, report.horizon_reached = _horizon(client, horizon, renewer)
                final = _flush(client)  # settlements that arrived during the horizon
                if isinstance(final.get("journal_seq"), int):
                    report.journal_seq = final["journal_seq"]
            with clock("capture"):
                result = capture()
        if renewer.lost:
            raise QuiesceMissed(f"quiesce lease lost during capture: {renewer.lost}")
        try:
            held = client.request("renew", lease_ms=int(lease * 1000))
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(
                f"quiesce lease could not be confirmed after capture: {exc}"
            ) from None
        if not held.get("ok"):
            raise QuiesceMissed(
                f"quiesce lease ended before the capture finished ({held.get('error')}); "
                "the copy is not a clean cut"
            )
        return result
    finally:
        resumed = time.monotonic()
        if acknowledged is not None:
            report.pause_ms = round((resumed - acknowledged) * 1000, 3)
        with clock("resume"), contextlib.suppress(AgentTimeout, AgentClosed):
            client.request("resume", timeout=RESUME_REPLY_S)
        client.close()  # closing alone also resumes an SDK agent (the lease's rule)


def _flush(client: AgentClient) -> dict[str, Any]:
    try:
        reply = client.request("flush", timeout=30.0)
    except (AgentTimeout, AgentClosed) as exc:
        raise QuiesceMissed(f"quiesce missed: flush failed: {exc}") from None
    if not reply.get("ok") or not reply.get("flushed"):
        raise QuiesceMissed(f"quiesce missed: the agent could not flush ({reply.get('error')})")
    return reply


def _horizon(
    client: AgentClient, horizon: float, renewer: _Renewer
) -> tuple[list[dict[str, Any]], bool]:
    """Poll `inflight` until no action is intent or started, or the horizon passes.

    A lease lost meanwhile (the agent resumed) ends the wait at once: it is a miss.
    """
    deadline = time.monotonic() + horizon
    while True:
        if renewer.lost:
            raise QuiesceMissed(f"quiesce lease lost during the horizon: {renewer.lost}")
        try:
            reply = client.request("inflight")
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(f"quiesce missed: inflight failed: {exc}") from None
        actions = list(reply.get("inflight") or [])
        if not any(a.get("state") in UNSETTLED for a in actions):
            return actions, True
        if time.monotonic() >= deadline:
            return actions, False
        time.sleep(min(HORIZON_POLL_S, max(0.0, deadline - time.monotonic())))


class _Steps:
    """Times named steps into report.steps_ms."""

    def __init__(self, report: SessionReport) -> None:
        self.report = report

    @contextlib.contextmanager
    def __call__(self, name: str) -> Any:
        started = time.monotonic()
        try:
            yield
        finally:
            self.report.steps_ms[name] = round((time.monotonic() - started) * 1000, 3)
