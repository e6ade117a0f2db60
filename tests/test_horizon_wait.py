"""The event-driven horizon: `inflight` with `wait_ms` (capability `inflight_wait`).

An agent that advertises it answers the moment its last `intent`/`started` action
settles, so a backup's horizon ends right after the settlement instead of at the next
poll. Old and new ends interoperate both ways: cleancut polls an agent that does not
advertise it (the hand-written minimal agent), and an SDK agent answers a client that
only polls (a raw socket, no `wait_ms`) at once, as before. Everything here is shown
by the order of events and the requests the agent received, never by measuring time.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cleancut.hot import session
from cleancut.sdk.ledger import Ledger
from cleancut.sdk.server import ControlServer

ROOT = Path(__file__).resolve().parent.parent


class WatchedLedger(Ledger):
    """A real ledger that says when a backup starts waiting on it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.waiting = threading.Event()

    def wait_settled(self, timeout: float) -> list[dict[str, Any]]:
        self.waiting.set()
        return super().wait_settled(timeout)


class RecordingServer(ControlServer):
    """The SDK's server, recording every request it handles, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[dict[str, Any]] = []

    def _handle(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(dict(request))
        return super()._handle(conn, request)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cc-hz-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(short_dir: Path) -> Iterator[tuple[RecordingServer, WatchedLedger]]:
    ledger = WatchedLedger(short_dir / "ledger.jsonl")
    server = RecordingServer(
        str(short_dir / "agent.sock"), agent="hz", ledger=ledger, flush_interval=None
    )
    server.start()
    yield server, ledger
    server.stop()
    ledger.close()


def _start_action(server: ControlServer, ledger: Ledger, key: str) -> None:
    with server.turn():
        assert ledger.intent(key, "email.send")
        ledger.started(key)


def _inflight_requests(server: RecordingServer) -> list[dict[str, Any]]:
    return [r for r in server.requests if r.get("op") == "inflight"]


def test_the_horizon_ends_when_the_last_action_settles(
    agent: tuple[RecordingServer, WatchedLedger],
) -> None:
    server, ledger = agent
    assert "inflight_wait" in server.capabilities
    _start_action(server, ledger, "k-1")
    events: list[str] = []

    def provider() -> None:  # the receipt arrives only once the backup is waiting for it
        assert ledger.waiting.wait(30), "the backup never waited on the agent"
        events.append("receipt")
        ledger.receipt("k-1", "r-1")

    settler = threading.Thread(target=provider, daemon=True)
    settler.start()

    def capture() -> bytes:
        events.append("capture")
        return ledger.path.read_bytes()

    report = session.SessionReport()
    # A horizon of a minute: only the settlement can have ended it this early.
    captured = session.quiesced(f"unix:{server.socket_path}", 5.0, 60.0, capture, report,
                                lease=10.0)
    settler.join(5)
    assert report.horizon_mode == "wait"
    assert report.horizon_reached is True and report.inflight == []
    assert events == ["receipt", "capture"]
    # One request answered the horizon: the settlement woke it, no poll followed.
    asked = _inflight_requests(server)
    assert len(asked) == 1 and asked[0]["wait_ms"] > 0, asked
    # The final flush wrote the held receipt before the capture read the ledger.
    last = json.loads(captured.splitlines()[-1])
    assert (last["key"], last["state"], last["receipt"]) == ("k-1", "receipt", "r-1")


def test_an_action_that_outlasts_the_horizon_is_recorded(
    agent: tuple[RecordingServer, WatchedLedger],
) -> None:
    server, ledger = agent
    _start_action(server, ledger, "k-slow")
    report = session.SessionReport()
    session.quiesced(f"unix:{server.socket_path}", 5.0, 0.3, lambda: None, report, lease=10.0)
    assert report.horizon_mode == "wait" and report.horizon_reached is False
    assert [(a["key"], a["state"]) for a in report.inflight] == [("k-slow", "started")]
    asked = _inflight_requests(server)
    assert asked and all(0 <= r["wait_ms"] <= 300 for r in asked if "wait_ms" in r), asked


def test_the_lease_is_renewed_while_the_agent_waits(
    agent: tuple[RecordingServer, WatchedLedger],
) -> None:
    """A wait never holds the shared connection past a renewal: with a 3 s lease and a
    4 s horizon the waits come in pieces and renewals go between them."""
    server, ledger = agent
    _start_action(server, ledger, "k-stuck")
    report = session.SessionReport()
    session.quiesced(f"unix:{server.socket_path}", 5.0, 4.0, lambda: None, report, lease=3.0)
    assert report.horizon_reached is False and server.stats["lease_expiries"] == 0
    ops = [r["op"] for r in server.requests]
    first_wait = ops.index("inflight")
    assert "renew" in ops[first_wait:ops.index("resume")], ops
    waits = [r["wait_ms"] for r in _inflight_requests(server) if "wait_ms" in r]
    assert len(waits) >= 2 and max(waits) <= 1000, waits  # pieces of at most a third


def test_a_bad_wait_ms_is_a_bad_request(agent: tuple[RecordingServer, WatchedLedger]) -> None:
    server, _ = agent
    with _Raw(server.socket_path) as raw:
        for bad in (-1, "10", True):
            reply = raw.ask({"id": 1, "op": "inflight", "wait_ms": bad})
            assert reply["ok"] is False and reply["error"].startswith("bad request"), reply


def test_an_old_client_that_only_polls_is_answered_at_once(
    agent: tuple[RecordingServer, WatchedLedger],
) -> None:
    """A client from before inflight_wait sends `inflight` without wait_ms: the agent
    answers with the unsettled action at once, as protocol v1 always did."""
    server, ledger = agent
    _start_action(server, ledger, "k-old")
    with _Raw(server.socket_path) as raw:
        hello = raw.ask({"id": 1, "op": "hello", "protocol": 1})
        assert "inflight_wait" in hello["capabilities"]  # advertised; the old client ignores it
        assert raw.ask({"id": 2, "op": "quiesce", "timeout_ms": 2000, "lease_ms": 10_000})["ok"]
        assert raw.ask({"id": 3, "op": "flush"})["flushed"] is True
        first = raw.ask({"id": 4, "op": "inflight"})
        assert [(a["key"], a["state"]) for a in first["inflight"]] == [("k-old", "started")]
        ledger.receipt("k-old", "r-old")  # settles between two polls
        assert raw.ask({"id": 5, "op": "inflight"}) == {"id": 5, "ok": True, "inflight": []}
        assert raw.ask({"id": 6, "op": "renew", "lease_ms": 10_000})["ok"] is True
        assert raw.ask({"id": 7, "op": "resume"})["state"] == "running"
    assert not ledger.waiting.is_set()  # nobody asked it to wait


def test_an_old_agent_is_polled(short_dir: Path) -> None:
    """The hand-written agent (docs/protocol.md before inflight_wait) does not advertise
    it: cleancut polls it as before and never sends it wait_ms."""
    sock, ws = str(short_dir / "agent.sock"), short_dir / "ws"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "minimal_agent.py"), "--socket", sock,
         "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        report = session.SessionReport()
        counter = session.quiesced(
            f"unix:{sock}", 5.0, 5.0, lambda: (ws / "counter.json").read_text(), report,
            lease=5.0,
        )
        assert json.loads(counter)["n"] >= 1
        assert report.horizon_mode == "poll" and report.horizon_reached is True
        assert "inflight_wait" not in report.agent["capabilities"]
    finally:
        proc.kill()
        proc.wait()


class _Raw:
    """A client written from docs/protocol.md alone: a socket, one JSON line each way."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        line = self.file.readline()
        assert line.endswith(b"\n"), f"no reply to {message}: {line!r}"
        return json.loads(line)

    def __enter__(self) -> _Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.sock.close()
