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

from cleancut.errors import AgentMisbehaved, CleancutError, QuiesceMissed
from cleancut.sdk.wire import UNSETTLED

from .control import REPLY_TIMEOUT_S, AgentClosed, AgentTimeout
from .runtime import AgentRuntime, LeaseLost, RuntimeContext, open_runtime

T = TypeVar("T")

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
    # How the horizon was waited out: "wait" (the agent answered when its actions settled,
    # protocol v1's inflight_wait), "poll" (inflight asked every HORIZON_POLL_S), or
    # "runtime" (the runtime's quiesce already waited for them).
    horizon_mode: str | None = None
    peer_pid: int | None = None
    # The journal's last durable record at the final flush: the snapshot is the state
    # at this sequence number (agents that journal; None otherwise).
    journal_seq: int | None = None


class _Renewer:
    """Renews the lease in the background while the capture runs on the main thread."""

    def __init__(self, runtime: AgentRuntime, lease_s: float, step_s: float) -> None:
        self.runtime = runtime
        self.lease_s = lease_s
        self.step_s = step_s
        self.stop = threading.Event()
        # Set when the capture ends: no renewal starts after it. A flag, not the event:
        # setting the event wakes the thread, and inside the pause that wake-up competes
        # with the main thread for the interpreter (ms under load); join() sets the event.
        self.stopping = False
        self.lost: str | None = None
        self.misbehaved: AgentMisbehaved | None = None
        # Set while a renewal wants or holds the connection it shares with the main thread.
        self.renewing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cleancut-renew", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.runtime.renew_every(self.lease_s)):
            if self.stopping:
                return  # the final renew after the capture is the lease's proof
            self.renewing.set()
            try:
                self.runtime.renew(self.step_s, self.lease_s)
            except LeaseLost as exc:
                self._lose(str(exc))
                return
            except AgentMisbehaved as exc:
                self.misbehaved = exc
                self.lost = str(exc)
                return
            except CleancutError as exc:  # the connection broke in a runtime's own terms
                self._lose(str(exc))
                return
            finally:
                self.renewing.clear()

    def _lose(self, why: str) -> None:
        """A renewal failed. Once stopped (the capture is over) its failure is not the
        lease's verdict: the final renew after the capture is, and this renewal may have
        been answered after that renew and the resume behind it."""
        if not (self.stopping or self.stop.is_set()):
            self.lost = why

    def let_renewal_go_first(self, timeout: float) -> None:
        """Before the main thread takes the shared connection again, let a renewal that
        waits for it have it (a lock is not fair: a loop that releases and re-takes it at
        once could keep the renewer out until the lease ends)."""
        deadline = time.monotonic() + timeout
        while self.renewing.is_set() and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)

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
        """Stop renewing, without waking or waiting for the thread: a renewal in flight
        holds the connection, so the final renew queues behind it anyway, and waking the
        thread up would cost the pause a thread switch (ms under load). join(), after
        the resume is sent, wakes it."""
        self.stopping = True

    def join(self) -> None:
        self.stopping = True
        self.stop.set()
        self.thread.join()


def quiesced(
    address: str,
    quiesce_timeout: float,
    horizon: float,
    capture: Callable[[], T],
    report: SessionReport,
    lease: float = 10.0,
    context: RuntimeContext | None = None,
    runtime: AgentRuntime | None = None,
) -> T:
    """Run `capture` while the agent at `address` is quiesced and flushed; fill `report`.

    The agent is reached through its runtime (hot/runtime.py: protocol v1 on a Unix
    socket, an OpenClaw gateway...). Raises QuiesceMissed when the agent does not
    confirm quiesce in time, cannot flush, or its lease ended before the capture
    finished; AgentMisbehaved when a reply breaks the protocol. Every request has a
    deadline no agent behaviour can extend, and the agent is sent `resume` in every
    case once quiesce was asked.
    """
    lease = max(lease, MIN_LEASE_S)
    # While quiesced, no request may outlast the lease: the renewer shares the connection,
    # so a longer wait would let the lease lapse anyway.
    step_s = min(REPLY_TIMEOUT_S, lease)
    runtime = runtime or open_runtime(address, context)
    clock = _Steps(report)
    try:
        with clock("hello"):
            report.agent = runtime.connect(step_s)
        report.peer_pid = runtime.peer_pid()
        return _paused(runtime, quiesce_timeout, horizon, capture, report, lease, step_s)
    finally:
        runtime.close()  # closing alone also resumes an SDK agent (the lease's rule)


def _paused(
    runtime: AgentRuntime,
    quiesce_timeout: float,
    horizon: float,
    capture: Callable[[], T],
    report: SessionReport,
    lease: float,
    step_s: float,
) -> T:
    clock = _Steps(report)
    acknowledged: float | None = None
    # With a runtime that pipelines it, the resume goes out right behind the final renew:
    # the pause ends when both are sent, and no second resume is needed once answered.
    resume_sent: list[float] = []
    resume_answered = False
    renewer: _Renewer | None = None

    def sent() -> None:
        resume_sent.append(time.monotonic())

    try:
        with clock("quiesce"):
            runtime.quiesce(quiesce_timeout, lease)
        acknowledged = time.monotonic()
        renewer = _Renewer(runtime, lease, step_s)
        with renewer:
            with clock("flush"):
                runtime.flush(step_s)
            with clock("horizon"):
                report.horizon_mode = _horizon_mode(runtime)
                report.inflight, report.horizon_reached = _horizon(
                    runtime, horizon, renewer, step_s, lease
                )
                final = runtime.flush(step_s)  # settlements that arrived during the horizon
                if "journal_seq" in final:
                    report.journal_seq = final["journal_seq"]
            with clock("capture"):
                result = capture()
        renewer.check("capture")
        try:
            with clock("lease_check"):
                if runtime.pipelines_resume:
                    resume_answered = runtime.renew_then_resume(step_s, lease, sent)
                    if resume_answered:  # sent with the renew .. both answered
                        report.steps_ms["resume"] = round(
                            (time.monotonic() - resume_sent[0]) * 1000, 3
                        )
                else:
                    runtime.renew(step_s, lease)
        except LeaseLost as exc:
            if not exc.answered:
                raise QuiesceMissed(
                    f"quiesce lease could not be confirmed after capture: {exc}"
                ) from None
            raise QuiesceMissed(
                f"quiesce lease ended before the capture finished ({exc}); "
                "the copy is not a clean cut"
            ) from None
        renewer.join()  # the resume is on its way: what the renewer met, it met in time
        renewer.check("capture")
        return result
    finally:
        resumed = resume_sent[0] if resume_sent else time.monotonic()
        if acknowledged is not None:
            report.pause_ms = round((resumed - acknowledged) * 1000, 3)
        # Whatever the agent does now (silence, garbage), resume is tried once, bounded
        # (again, when a pipelined resume went unanswered).
        if not resume_answered:
            with clock("resume"), contextlib.suppress(AgentTimeout, AgentClosed, CleancutError):
                runtime.resume(RESUME_REPLY_S)
        if renewer is not None and renewer.thread.ident is not None:
            renewer.stop.set()
            renewer.join()  # before the caller closes the connection it uses


def _horizon_mode(runtime: AgentRuntime) -> str:
    if not runtime.polls_horizon:
        return "runtime"
    return "wait" if runtime.waits_horizon else "poll"


def _horizon(
    runtime: AgentRuntime, horizon: float, renewer: _Renewer, step_s: float, lease: float
) -> tuple[list[dict[str, Any]], bool]:
    """Wait until no action is intent or started, or the horizon passes.

    An agent that can wait for its own actions (inflight_wait) is asked to answer when
    they settle, so the horizon ends as soon as they do; others are polled every
    HORIZON_POLL_S. A lease lost meanwhile (the agent resumed) ends the wait at once: it
    is a miss. A runtime whose quiesce already waited for its actions is asked once.
    """
    deadline = time.monotonic() + horizon
    # One wait holds the connection the renewer shares. A renewal due just after a wait
    # began waits for it to end: with renewals every third of the lease, waits of a sixth
    # keep the longest gap between two renewals near half the lease, whatever the load.
    chunk = min(lease / 6, step_s / 2)
    while True:
        renewer.let_renewal_go_first(step_s)
        renewer.check("the horizon")
        asked = time.monotonic()
        wait = min(max(0.0, deadline - asked), chunk)
        if runtime.polls_horizon and runtime.waits_horizon and wait > 0:
            actions = runtime.inflight_settled(wait, step_s)
        else:
            wait = 0.0
            actions = runtime.inflight(step_s)
        if not runtime.polls_horizon:
            return actions, True
        if not any(a["state"] in UNSETTLED for a in actions):
            return actions, True
        if time.monotonic() >= deadline:
            return actions, False
        if not wait or time.monotonic() - asked < wait:  # polling, or it did not wait
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
