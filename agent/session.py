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

from ..store.errors import AgentMisbehaved, QuiesceMissed
from .control import REPLY_TIMEOUT_S, AgentClient, AgentClosed, AgentTimeout
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

    def __init__(self, client: AgentClient, lease_s: float, step_s: float) -> None:
        self.client = client
        self.lease_s = lease_s
        self.step_s = step_s
        self.stop = threading.Event()
        self.lost: str | None = None
        self.misbehaved: AgentMisbehaved | None = None
        self.thread = threading.Thread(target=self._run, name="cleancut-renew", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.lease_s / 3):
            try:
                reply = self.client.request(
                    "renew", timeout=self.step_s, lease_ms=int(self.lease_s * 1000)
                )
            except (AgentTimeout, AgentClosed) as exc:
                self.lost = str(exc)
                return
            except AgentMisbehaved as exc:
                self.misbehaved = exc
                self.lost = str(exc)
                return
            if not reply["ok"]:
                self.lost = str(reply["error"])
                return

    def check(self, during: str) -> None:
        """Raise what the renewer met: the agent broke the protocol, or the lease was lost."""
        if self.misbehaved is not None:
            raise self.misbehaved
        if self.lost:
            raise QuiesceMissed(f"quiesce lease lost during {during}: {self.lost}")

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
    flush, or its lease ended before the capture finished; AgentMisbehaved when a
    reply breaks the protocol. Every request has a deadline no agent behaviour can
    extend, and the agent is sent `resume` in every case once quiesce was asked.
    """
    lease = max(lease, MIN_LEASE_S)
    # While quiesced, no request may outlast the lease: the renewer shares the connection,
    # so a longer wait would let the lease lapse anyway.
    step_s = min(REPLY_TIMEOUT_S, lease)
    client = AgentClient(address)
    clock = _Steps(report)
    try:
        with clock("hello"):
            client.connect()
            hello = client.hello()
        report.agent = {k: hello.get(k) for k in ("agent", "protocol", "capabilities")}
        report.peer_pid = client.peer_pid()
        return _paused(client, quiesce_timeout, horizon, capture, report, lease, step_s)
    finally:
        client.close()  # closing alone also resumes an SDK agent (the lease's rule)


def _paused(
    client: AgentClient,
    quiesce_timeout: float,
    horizon: float,
    capture: Callable[[], T],
    report: SessionReport,
    lease: float,
    step_s: float,
) -> T:
    clock = _Steps(report)
    acknowledged: float | None = None
    try:
        with clock("quiesce"):
            _quiesce(client, quiesce_timeout, lease)
        acknowledged = time.monotonic()
        with _Renewer(client, lease, step_s) as renewer:
            with clock("flush"):
                _flush(client, step_s)
            with clock("horizon"):
                report.inflight, report.horizon_reached = _horizon(
                    client, horizon, renewer, step_s
                )
                final = _flush(client, step_s)  # settlements that arrived during the horizon
                if "journal_seq" in final:
                    report.journal_seq = final["journal_seq"]
            with clock("capture"):
                result = capture()
        renewer.check("capture")
        try:
            held = client.request("renew", timeout=step_s, lease_ms=int(lease * 1000))
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(
                f"quiesce lease could not be confirmed after capture: {exc}"
            ) from None
        if not held["ok"]:
            raise QuiesceMissed(
                f"quiesce lease ended before the capture finished ({held['error']}); "
                "the copy is not a clean cut"
            )
        return result
    finally:
        resumed = time.monotonic()
        if acknowledged is not None:
            report.pause_ms = round((resumed - acknowledged) * 1000, 3)
        # Whatever the agent does now (silence, garbage), resume is tried once, bounded.
        with clock("resume"), contextlib.suppress(AgentTimeout, AgentClosed, AgentMisbehaved):
            client.request("resume", timeout=RESUME_REPLY_S)


def _quiesce(client: AgentClient, quiesce_timeout: float, lease: float) -> None:
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
    if not reply["ok"]:
        raise QuiesceMissed(
            f"quiesce missed: the agent answered {reply['error']!r} "
            f"(timeout {quiesce_timeout:g}s)"
        )


def _flush(client: AgentClient, step_s: float) -> dict[str, Any]:
    try:
        reply = client.request("flush", timeout=step_s)
    except (AgentTimeout, AgentClosed) as exc:
        raise QuiesceMissed(f"quiesce missed: flush failed: {exc}") from None
    if not reply["ok"]:
        raise QuiesceMissed(f"quiesce missed: the agent could not flush ({reply['error']})")
    return reply


def _horizon(
    client: AgentClient, horizon: float, renewer: _Renewer, step_s: float
) -> tuple[list[dict[str, Any]], bool]:
    """Poll `inflight` until no action is intent or started, or the horizon passes.

    A lease lost meanwhile (the agent resumed) ends the wait at once: it is a miss.
    """
    deadline = time.monotonic() + horizon
    while True:
        renewer.check("the horizon")
        try:
            reply = client.request("inflight", timeout=step_s)
        except (AgentTimeout, AgentClosed) as exc:
            raise QuiesceMissed(f"quiesce missed: inflight failed: {exc}") from None
        # An error reply is read as nothing in flight (docs/protocol.md, step 4).
        actions = list(reply["inflight"]) if reply["ok"] else []
        if not any(a["state"] in UNSETTLED for a in actions):
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
