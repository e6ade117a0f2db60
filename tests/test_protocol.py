"""Control protocol v1 over real sockets and real processes (docs/protocol.md).

The SDK side runs in this process: a ControlServer with a Ledger and worker
threads doing turns, whose counter shows at any moment whether the agent is
paused. The backup side is cleancut's own AgentClient, a raw socket where the
test needs to send what a well-behaved client would not, or a separate process
that is killed or stopped while it holds quiesce. Two agents written by hand
from docs/protocol.md (Python and Node.js) are driven through the same
conversation, as the proof that the page is enough to implement the protocol.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cleancut.hot import session
from cleancut.hot.control import AgentClient
from cleancut.sdk.ledger import Ledger, LedgerError
from cleancut.sdk.server import ControlServer
from cleancut.sdk.wire import MAX_LINE

ROOT = Path(__file__).resolve().parent.parent
# Scheduling noise allowed on top of a timeout or a lease: a correctness bound (the
# agent does run again), generous enough that a loaded machine cannot fail it.
SLACK = 10.0
NO_NODE = "node is not on PATH: `make test` installs it (scripts/test-tools)"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cc-proto-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Agent:
    """An agent built on the SDK, in this process: two workers doing short turns."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "agent.sock")
        self.ledger_path = directory / "ledger.jsonl"
        self.ledger = Ledger(self.ledger_path)
        self.server = ControlServer(
            self.path, agent="test-agent", ledger=self.ledger, flush_interval=None
        )
        self.count = 0
        self.flushes = 0
        self._stop = threading.Event()
        self._releases: list[threading.Event] = []
        self._clients: list[AgentClient] = []
        self.server.on_flush(self._on_flush)
        self.server.start()
        self._workers = [_thread(self._work) for _ in range(2)]

    def _on_flush(self) -> None:
        self.flushes += 1

    def _work(self) -> None:
        while not self._stop.is_set():
            with self.server.turn():
                self.count += 1
            time.sleep(0.002)

    def client(self) -> AgentClient:
        client = AgentClient(f"unix:{self.path}")
        client.connect()
        self._clients.append(client)
        return client

    def long_turn(self) -> threading.Event:
        """Start a turn that lasts until the returned event is set."""
        entered, release = threading.Event(), threading.Event()
        self._releases.append(release)

        def run() -> None:
            with self.server.turn():
                entered.set()
                release.wait(30)

        _thread(run)
        assert entered.wait(2), "the long turn did not start"
        return release

    def advances(self, within: float = 1.0) -> bool:
        """True when a worker completes a turn within `within` seconds: the agent runs."""
        start, deadline = self.count, time.monotonic() + within
        while time.monotonic() < deadline:
            if self.count > start:
                return True
            time.sleep(0.002)
        return False

    def stable(self, seconds: float = 0.2) -> bool:
        """True when no turn starts for `seconds`: the agent is paused."""
        time.sleep(0.02)  # a turn admitted just before the gate closed has counted by now
        start = self.count
        time.sleep(seconds)
        return self.count == start

    def wait_state(self, state: str, within: float) -> float | None:
        """Seconds until the SDK is in `state`, or None if it is not within `within`."""
        start = time.monotonic()
        while self.server.state != state:
            if time.monotonic() - start > within:
                return None
            time.sleep(0.002)
        return time.monotonic() - start

    def close(self) -> None:
        for release in self._releases:
            release.set()
        self._stop.set()
        for client in self._clients:
            client.close()
        self.server.stop()
        for worker in self._workers:
            worker.join(2)
        self.ledger.close()


@pytest.fixture
def agent(short_dir: Path) -> Iterator[Agent]:
    agent = Agent(short_dir)
    yield agent
    agent.close()


class Raw:
    """A client that sends exactly the bytes it is given (pipelined, malformed, too long)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def send(self, *messages: dict[str, Any] | bytes) -> None:
        data = (m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages)
        self.sock.sendall(b"".join(data))

    def reply(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"no reply line: {line!r}"
        return json.loads(line)

    def at_eof(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Processes:
    """Child processes of one test, SIGKILLed (stopped or not) when it ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            cwd=ROOT,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    processes = Processes()
    yield processes
    processes.close()


def read_line(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """One line of a child's stdout, failing (not hanging) when it does not come."""
    assert proc.stdout is not None
    fd, data = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from pid {proc.pid} within {timeout}s: {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"pid {proc.pid} exited ({proc.poll()}) after {data!r}")
        data += chunk
    return data.decode().strip()


# --- hello -------------------------------------------------------------------


def test_hello_negotiates_protocol_1(agent: Agent) -> None:
    client = agent.client()
    assert client.request("hello", protocol=1) == {
        "id": 1,
        "ok": True,
        "protocol": 1,
        "agent": "test-agent",
        "capabilities": ["quiesce", "flush", "inflight", "inflight_wait"],
        "state": "running",
    }
    newer = client.request("hello", protocol=2)
    assert newer["ok"] is True and newer["protocol"] == 1  # answered with what it speaks
    for reply in (
        client.request("hello", protocol=0),
        client.request("hello"),  # no version at all
        client.request("hello", protocol="1"),
        client.request("hello", protocol=1.0),
    ):
        assert reply["ok"] is False and reply["error"].startswith("unsupported protocol"), reply
    assert client.hello()["protocol"] == 1  # cleancut's own check accepts it


def test_hello_rejects_a_boolean_protocol(agent: Agent) -> None:
    reply = agent.client().request("hello", protocol=True)
    assert reply["ok"] is False and reply["error"].startswith("unsupported protocol")


# --- quiesce -----------------------------------------------------------------


def test_quiesce_waits_for_the_running_turn_and_holds_new_ones(agent: Agent) -> None:
    release = agent.long_turn()
    client = agent.client()
    result: dict[str, Any] = {}
    waiter = _thread(
        lambda: result.update(client.request("quiesce", timeout_ms=5000, lease_ms=5000))
    )
    assert agent.wait_state("quiescing", 1) is not None
    assert agent.stable(0.2), "a new turn started while quiescing"
    assert not result, "quiesce answered while a turn was still running"

    late = threading.Event()

    def late_turn() -> None:
        with agent.server.turn():
            late.set()

    _thread(late_turn)
    time.sleep(0.1)
    assert not late.is_set(), "a turn started during quiesce did not wait"

    release.set()
    waiter.join(2)
    assert result == {"id": 1, "ok": True, "state": "quiesced", "inflight": []}
    assert agent.stable(0.2) and not late.is_set()

    assert client.request("resume") == {"id": 2, "ok": True, "state": "running"}
    assert late.wait(1), "the waiting turn did not run after resume"
    assert agent.advances()


def test_quiesce_times_out_on_a_turn_that_never_ends(agent: Agent) -> None:
    agent.long_turn()
    client = agent.client()
    started = time.monotonic()
    reply = client.request("quiesce", timeout_ms=300, lease_ms=5000)
    elapsed = time.monotonic() - started
    assert reply == {"id": 1, "ok": False, "error": "timeout"}
    assert 0.29 <= elapsed < 0.3 + SLACK, elapsed
    assert agent.server.state == "running"
    assert agent.advances(), "new turns did not run again after the timeout"
    assert client.request("renew", lease_ms=1000)["error"].startswith("not quiesced")


def test_resume_twice_is_ok_and_leaves_the_agent_running(agent: Agent) -> None:
    client = agent.client()
    assert client.request("quiesce", timeout_ms=2000, lease_ms=5000)["state"] == "quiesced"
    assert agent.stable()
    for _ in range(2):
        reply = client.request("resume")
        assert reply["ok"] is True and reply["state"] == "running"
        assert agent.advances()
    other = agent.client().request("resume")  # a running agent, another connection
    assert other == {"id": 1, "ok": True, "state": "running"}
    assert agent.advances()


def test_resume_from_another_connection_cancels_a_waiting_quiesce(agent: Agent) -> None:
    release = agent.long_turn()
    holder, other = agent.client(), agent.client()
    result: dict[str, Any] = {}
    waiter = _thread(
        lambda: result.update(holder.request("quiesce", timeout_ms=5000, lease_ms=5000))
    )
    assert agent.wait_state("quiescing", 1) is not None
    assert other.request("resume") == {"id": 1, "ok": True, "state": "running"}
    waiter.join(1)
    assert result["ok"] is False and result["error"].startswith("cancelled"), result
    assert agent.server.state == "running"
    assert agent.advances(), "the agent was left paused after a cancelled quiesce"
    release.set()
    assert agent.advances()
    # The cancelled holder holds nothing: a new quiesce from it is a fresh one.
    assert holder.request("quiesce", timeout_ms=2000, lease_ms=5000)["state"] == "quiesced"
    assert holder.request("resume")["state"] == "running"
    assert agent.advances()


def test_pipelined_quiesce_and_resume_on_one_connection_end_running(agent: Agent) -> None:
    raw = Raw(agent.path)
    try:
        quiesce = {"id": "q", "op": "quiesce", "timeout_ms": 2000, "lease_ms": 5000}
        raw.send(quiesce, {"id": "r", "op": "resume"})
        assert raw.reply() == {"id": "q", "ok": True, "state": "quiesced", "inflight": []}
        assert raw.reply() == {"id": "r", "ok": True, "state": "running"}
        assert agent.advances()

        # Behind a quiesce that waits for a turn, the resume is handled after it, in order.
        release = agent.long_turn()
        threading.Timer(0.15, release.set).start()
        raw.send({**quiesce, "id": "q2"}, {"id": "r2", "op": "resume"})
        assert raw.reply() == {"id": "q2", "ok": True, "state": "quiesced", "inflight": []}
        assert raw.reply() == {"id": "r2", "ok": True, "state": "running"}
        assert agent.server.state == "running"
        assert agent.advances()
    finally:
        raw.close()


# --- the lease ---------------------------------------------------------------


def test_the_lease_ends_by_itself_and_a_late_renew_fails(agent: Agent) -> None:
    client = agent.client()
    # A first lease long enough that the checks and the renew below land inside it
    # whatever the scheduling; the renew then shortens it to 300 ms from its arrival.
    assert client.request("quiesce", timeout_ms=2000, lease_ms=5000)["state"] == "quiesced"
    assert agent.stable(0.1)
    renewing = time.monotonic()  # the renew arrives after this, so the lease ends 0.3 s later
    assert client.request("renew", lease_ms=300) == {"id": 2, "ok": True, "state": "quiesced"}
    assert agent.wait_state("running", 10) is not None, "the lease did not end"
    assert time.monotonic() - renewing >= 0.3, "the renew did not restart the lease"
    assert agent.advances()
    late = client.request("renew", lease_ms=1000)
    assert late["ok"] is False and late["error"].startswith("not quiesced"), late
    assert agent.server.state == "running"  # a renew never re-quiesces
    assert agent.server.stats["lease_expiries"] == 1


def test_a_repeated_quiesce_from_the_holder_is_a_renewal(agent: Agent) -> None:
    client = agent.client()
    assert client.request("quiesce", timeout_ms=2000, lease_ms=2000)["state"] == "quiesced"
    first_ends_by = time.monotonic() + 2.0  # the first lease began before its reply came
    again = client.request("quiesce", timeout_ms=0, lease_ms=60_000)
    assert again == {"id": 2, "ok": True, "state": "quiesced", "inflight": []}
    time.sleep(max(0.0, first_ends_by - time.monotonic()) + 0.1)  # past the first lease
    assert agent.server.state == "quiesced"
    assert agent.server.stats["quiesces"] == 1
    assert client.request("resume")["state"] == "running"


def test_closing_the_connection_while_quiesced_resumes_at_once(agent: Agent) -> None:
    client = agent.client()
    assert client.request("quiesce", timeout_ms=2000, lease_ms=60_000)["state"] == "quiesced"
    assert agent.stable(0.1)
    client.close()
    # The lease has a minute left: running again within half of it is the closed
    # connection's doing, not the lease's.
    elapsed = agent.wait_state("running", 30.0)
    assert elapsed is not None, "the agent stayed quiesced after its holder hung up"
    assert agent.advances()


def test_a_second_client_gets_busy(agent: Agent) -> None:
    holder, other = agent.client(), agent.client()
    release = agent.long_turn()
    result: dict[str, Any] = {}
    waiter = _thread(
        lambda: result.update(holder.request("quiesce", timeout_ms=5000, lease_ms=5000))
    )
    assert agent.wait_state("quiescing", 1) is not None
    busy = other.request("quiesce", timeout_ms=1000, lease_ms=1000)  # while quiescing
    assert busy["ok"] is False and busy["error"].startswith("busy"), busy
    release.set()
    waiter.join(2)
    assert result["state"] == "quiesced"
    busy = other.request("quiesce", timeout_ms=1000, lease_ms=1000)  # while quiesced
    assert busy["ok"] is False and busy["error"].startswith("busy"), busy
    busy = other.request("renew", lease_ms=1000)
    assert busy["ok"] is False and busy["error"].startswith("busy"), busy
    other.close()  # not the holder: its connection closing changes nothing
    time.sleep(0.05)
    assert agent.server.state == "quiesced"
    assert holder.request("renew", lease_ms=5000)["ok"] is True
    assert holder.request("resume")["state"] == "running"
    assert agent.advances()


def test_closing_the_connection_while_quiesce_waits_lets_turns_run(agent: Agent) -> None:
    agent.long_turn()
    raw = Raw(agent.path)
    raw.send({"id": 1, "op": "quiesce", "timeout_ms": 3000, "lease_ms": 5000})
    assert agent.wait_state("quiescing", 1) is not None
    raw.close()  # the backup process dies while its quiesce waits
    assert agent.wait_state("running", 0.5) is not None, "still quiescing for a dead client"


def test_one_client_shared_by_two_threads_gets_every_reply(agent: Agent) -> None:
    """The backup's lease renewer shares the connection with its main thread (session.py)."""
    client = agent.client()
    assert client.request("quiesce", timeout_ms=2000, lease_ms=10_000)["state"] == "quiesced"
    errors: list[BaseException] = []

    def hammer(op: str, check: Callable[[dict[str, Any]], bool], **fields: Any) -> None:
        try:
            for _ in range(100):
                reply = client.request(op, timeout=2.0, **fields)
                assert reply["ok"] is True and check(reply), (op, reply)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        _thread(lambda: hammer("inflight", lambda r: r["inflight"] == [])),
        _thread(lambda: hammer("renew", lambda r: r["state"] == "quiesced", lease_ms=10_000)),
    ]
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert client.request("resume")["state"] == "running"


HOLDER = """
import sys
from cleancut.hot.control import AgentClient

client = AgentClient("unix:" + sys.argv[1])
client.connect()
client.hello()
reply = client.request("quiesce", timeout_ms=5000, lease_ms=int(sys.argv[2]))
print(reply.get("state") or reply.get("error"), flush=True)
sys.stdin.readline()  # hold quiesce until told to go on (or killed)
reply = client.request("renew", lease_ms=int(sys.argv[2]))
print("renewed" if reply["ok"] else reply["error"], flush=True)
client.request("resume")
"""


def test_a_backup_killed_while_holding_quiesce_leaves_the_agent_running(
    agent: Agent, procs: Processes
) -> None:
    holder = procs.start([sys.executable, "-c", HOLDER, agent.path, "60000"])
    assert read_line(holder) == "quiesced"
    assert agent.server.state == "quiesced" and agent.stable(0.1)
    holder.send_signal(signal.SIGKILL)
    elapsed = agent.wait_state("running", SLACK)
    assert elapsed is not None, "the agent stayed paused after its backup was killed"
    assert agent.advances()


def test_a_backup_stopped_while_holding_quiesce_loses_its_lease(
    agent: Agent, procs: Processes
) -> None:
    holder = procs.start([sys.executable, "-c", HOLDER, agent.path, "2000"])
    assert read_line(holder) == "quiesced"
    holder.send_signal(signal.SIGSTOP)
    time.sleep(0.2)
    assert agent.server.state == "quiesced"  # the connection is open: only the lease ends it
    assert agent.wait_state("running", 2 + SLACK) is not None, "the lease did not end"
    assert agent.advances()
    holder.send_signal(signal.SIGCONT)
    assert holder.stdin is not None
    holder.stdin.write(b"go on\n")
    # The backup, running again, learns that its capture was not quiesced throughout.
    assert read_line(holder).startswith("not quiesced")
    assert holder.wait(5) == 0
    assert agent.advances()


# --- the ledger --------------------------------------------------------------


def test_settlements_while_quiesced_wait_for_flush_but_inflight_sees_them(agent: Agent) -> None:
    ledger = agent.ledger
    with agent.server.turn():
        for key, kind in (("k-receipt", "email.send"), ("k-unknown", "http.post"),
                          ("k-later", "sms.send")):
            assert ledger.intent(key, kind, to="someone")
            ledger.started(key)
    client = agent.client()
    reply = client.request("quiesce", timeout_ms=2000, lease_ms=10_000)
    assert sorted((a["key"], a["state"]) for a in reply["inflight"]) == [
        ("k-later", "started"), ("k-receipt", "started"), ("k-unknown", "started")
    ]
    before = agent.ledger_path.read_bytes()

    def provider_callbacks() -> None:  # a thread outside any turn
        ledger.receipt("k-receipt", "r-1")
        ledger.unknown("k-unknown")

    _thread(provider_callbacks).join(2)
    assert agent.ledger_path.read_bytes() == before, "the ledger changed under a capture"
    inflight = client.request("inflight")["inflight"]
    assert sorted((a["key"], a["kind"], a["state"]) for a in inflight) == [
        ("k-later", "sms.send", "started"), ("k-unknown", "http.post", "unknown")
    ]
    for action in inflight:
        assert RFC3339_UTC.match(action["since"]), action
        datetime.fromisoformat(action["since"])

    flushes = agent.flushes
    assert client.request("flush") == {"id": 3, "ok": True, "flushed": True}
    assert agent.flushes == flushes + 1
    flushed = agent.ledger_path.read_bytes()
    assert flushed.startswith(before)
    written = [json.loads(line) for line in flushed[len(before):].splitlines()]
    assert [(e["key"], e["state"]) for e in written] == [
        ("k-receipt", "receipt"), ("k-unknown", "unknown")
    ]
    assert written[0]["receipt"] == "r-1"

    # After the flush, still quiesced: what comes next is held again, until resume.
    _thread(lambda: ledger.failed("k-later", "refused")).join(2)
    assert agent.ledger_path.read_bytes() == flushed
    assert [a["key"] for a in client.request("inflight")["inflight"]] == ["k-unknown"]
    assert client.request("resume")["state"] == "running"
    last = json.loads(agent.ledger_path.read_bytes().splitlines()[-1])
    assert (last["key"], last["state"], last["error"]) == ("k-later", "failed", "refused")


def test_a_torn_last_line_is_cut_when_the_ledger_reopens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.intent("a", "email.send")
    ledger.started("a")
    ledger.close()
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"key":"a","state":"rece')  # a crash in the middle of a write

    ledger = Ledger(path)
    assert path.read_bytes() == good
    assert ledger.get("a")["state"] == "started"
    ledger.receipt("a", "r-1")  # the log goes on cleanly after the cut
    ledger.close()
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [e["state"] for e in entries] == ["intent", "started", "receipt"]
    reopened = Ledger(path)
    assert reopened.inflight() == []
    assert reopened.get("a")["receipt"] == "r-1"
    reopened.close()


def test_an_illegal_transition_raises(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    with pytest.raises(LedgerError):
        ledger.started("never-intended")
    assert ledger.intent("k", "email.send") is True
    assert ledger.intent("k", "email.send") is False  # known: must not be repeated
    with pytest.raises(LedgerError):
        ledger.receipt("k", "r-1")  # intent -> receipt skips started
    with pytest.raises(LedgerError):
        ledger.unknown("k")  # nothing was sent yet
    ledger.started("k")
    ledger.receipt("k", "r-1")
    for settle_again in (
        lambda: ledger.started("k"),
        lambda: ledger.unknown("k"),
        lambda: ledger.failed("k", "late"),
        lambda: ledger.receipt("k", "r-2"),
    ):
        with pytest.raises(LedgerError):
            settle_again()
    ledger.close()
    assert len(path.read_bytes().splitlines()) == 3  # a refused transition writes nothing


# --- framing -----------------------------------------------------------------


def test_a_malformed_line_gets_an_error_with_id_null_and_the_connection_works(
    agent: Agent,
) -> None:
    raw = Raw(agent.path)
    try:
        raw.send(
            b"this is not json\n",
            b"[1, 2]\n",
            b"\xff\xfe\n",  # not UTF-8
            b"\n",  # blank lines are skipped
            {"id": 5, "op": "frobnicate"},
            {"id": 6, "op": "quiesce", "timeout_ms": -1},
            {"id": 7, "op": "hello", "protocol": 1, "future_field": {"ignored": True}},
        )
        for _ in range(3):
            reply = raw.reply()
            assert reply["id"] is None and reply["ok"] is False, reply
            assert reply["error"].startswith("bad request"), reply
        assert raw.reply() == {"id": 5, "ok": False, "error": "unknown op: frobnicate"}
        reply = raw.reply()
        assert reply["id"] == 6 and reply["error"].startswith("bad request"), reply
        assert raw.reply()["id"] == 7
        assert agent.server.state == "running"
    finally:
        raw.close()


def test_an_over_long_line_gets_an_error_and_the_connection_is_closed(agent: Agent) -> None:
    raw = Raw(agent.path)
    try:
        raw.send({"id": 1, "op": "quiesce", "timeout_ms": 2000, "lease_ms": 60_000})
        assert raw.reply()["state"] == "quiesced"
        raw.sock.sendall(b"x" * (MAX_LINE + 1))  # no newline: exactly what the agent reads
        reply = raw.reply()
        assert reply["id"] is None and reply["ok"] is False
        assert reply["error"].startswith("bad request") and "longer than" in reply["error"]
        assert raw.at_eof()
    finally:
        raw.close()
    assert agent.wait_state("running", 0.5) is not None  # the holder's connection closed
    assert agent.advances()
    assert agent.client().hello()["ok"] is True  # and the agent serves others as before


# --- agents written by hand from docs/protocol.md ------------------------------


def _workspace(ws: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file's bytes and mtime; None for one renamed away while we looked (a change)."""
    files: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(ws.iterdir()):
        try:
            files[path.name] = (path.read_bytes(), path.stat().st_mtime_ns)
        except FileNotFoundError:
            files[path.name] = None
    return files


def _changes(ws: Path, within: float = 1.0) -> bool:
    """True when the workspace changes within `within` seconds: its worker runs."""
    before, deadline = _workspace(ws), time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.02)
        if _workspace(ws) != before:
            return True
    return False


def _still(ws: Path) -> bool:
    """True when the workspace stays byte-for-byte the same, mtimes included, twice over."""
    first = _workspace(ws)
    time.sleep(0.2)
    second = _workspace(ws)
    time.sleep(0.2)
    return first == second == _workspace(ws)


def _start(procs: Processes, argv: list[str], directory: Path) -> tuple[str, Path]:
    sock, ws = str(directory / "agent.sock"), directory / "ws"
    proc = procs.start([*argv, "--socket", sock, "--workspace", str(ws)])
    assert read_line(proc) == "ready"
    assert os.stat(sock).st_mode & 0o777 == 0o600
    return sock, ws


def _converse(sock: str, ws: Path) -> None:
    """The conversation a backup has with an agent, plus the ways it can go wrong."""
    client = AgentClient(f"unix:{sock}")
    client.connect()
    try:
        hello = client.hello()
        assert {"quiesce", "flush"} <= set(hello["capabilities"]) and hello["state"] == "running"
        assert client.request("hello", protocol=2)["protocol"] == 1
        assert client.request("hello", protocol=0)["error"].startswith("unsupported protocol")
        assert client.request("frobnicate")["error"].startswith("unknown op")
        assert _changes(ws)

        quiesced = client.request("quiesce", timeout_ms=2000, lease_ms=5000)
        assert quiesced["ok"] is True and quiesced["state"] == "quiesced", quiesced
        assert isinstance(quiesced["inflight"], list)
        flushed = client.request("flush")
        assert flushed["ok"] is True and flushed["flushed"] is True, flushed
        assert _still(ws), "the workspace changed while quiesced"
        counter = json.loads((ws / "counter.json").read_text())
        last = json.loads((ws / "log.jsonl").read_text().splitlines()[-1])
        assert counter["n"] == last["n"], "quiesced in the middle of a unit of work"
        inflight = client.request("inflight")
        assert inflight["ok"] is True and isinstance(inflight["inflight"], list)
        renewed = client.request("renew", lease_ms=5000)
        assert renewed["ok"] is True and renewed["state"] == "quiesced", renewed
        other = AgentClient(f"unix:{sock}")
        other.connect()
        try:
            busy = other.request("quiesce", timeout_ms=1000, lease_ms=1000)
            assert busy["ok"] is False and busy["error"].startswith("busy"), busy
        finally:
            other.close()
        for _ in range(2):
            resumed = client.request("resume")
            assert resumed["ok"] is True and resumed["state"] == "running", resumed
        assert _changes(ws), "the workspace did not change again after resume"

        # The lease ends by itself, and a late renew says so.
        # A lease long enough for _still's 0.4 s whatever the scheduling.
        assert client.request("quiesce", timeout_ms=2000, lease_ms=2000)["ok"] is True
        assert _still(ws)
        assert _changes(ws, within=2 + SLACK), "the agent did not resume when the lease ended"
        late = client.request("renew", lease_ms=1000)
        assert late["ok"] is False and late["error"].startswith("not quiesced"), late
    finally:
        client.close()

    # The holder's connection closing ends the lease at once.
    holder = AgentClient(f"unix:{sock}")
    holder.connect()
    assert holder.request("quiesce", timeout_ms=2000, lease_ms=60_000)["ok"] is True
    assert _still(ws)
    holder.close()
    assert _changes(ws, within=0.5), "the agent did not resume when the connection closed"

    # The whole backup sequence, as `cleancut backup --agent` runs it.
    report = session.SessionReport()
    still = session.quiesced(f"unix:{sock}", 2.0, 1.0, lambda: _still(ws), report, lease=3.0)
    assert still, "the workspace changed during the capture"
    assert report.horizon_reached and report.inflight == [] and report.pause_ms is not None
    assert _changes(ws), "the agent did not run again after the backup sequence"

    # Framing errors: id null, and the connection goes on.
    raw = Raw(sock)
    try:
        raw.send(b"not json\n", {"id": "x", "op": "resume"})
        error = raw.reply()
        assert error["id"] is None and error["ok"] is False, error
        assert raw.reply() == {"id": "x", "ok": True, "state": "running"}
    finally:
        raw.close()


def test_the_hand_written_python_agent_speaks_the_protocol(
    procs: Processes, short_dir: Path
) -> None:
    sock, ws = _start(procs, [sys.executable, str(ROOT / "tests" / "minimal_agent.py")], short_dir)
    _converse(sock, ws)


def test_the_hand_written_node_agent_speaks_the_protocol(
    procs: Processes, short_dir: Path
) -> None:
    node = shutil.which("node")
    assert node is not None, NO_NODE
    script = ROOT / "docs" / "examples" / "minimal_agent.js"
    sock, ws = _start(procs, [node, str(script)], short_dir)
    _converse(sock, ws)


@pytest.mark.parametrize("language", ["python", "node"])
def test_the_hand_written_agents_never_delete_a_file_at_their_socket_path(
    short_dir: Path, language: str
) -> None:
    """docs/protocol.md: a path that holds anything but a socket is not ours to delete."""
    if language == "node":
        node = shutil.which("node")
        assert node is not None, NO_NODE
        argv = [node, str(ROOT / "docs" / "examples" / "minimal_agent.js")]
    else:
        argv = [sys.executable, str(ROOT / "tests" / "minimal_agent.py")]
    sock = short_dir / "agent.sock"
    sock.write_text("the operator's file")
    proc = subprocess.run(
        [*argv, "--socket", str(sock), "--workspace", str(short_dir / "ws")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "not a socket" in proc.stderr
    assert sock.read_text() == "the operator's file"


def test_every_json_example_in_protocol_md_parses() -> None:
    """The page is the contract: an example that does not parse teaches the wrong thing."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) >= 12
    decoder = json.JSONDecoder()
    for block in blocks:
        messages, at = [], 0
        while block[at:].strip():  # one or more messages, some shown on several lines
            at += len(block[at:]) - len(block[at:].lstrip())
            message, at = decoder.raw_decode(block, at)
            messages.append(message)
        for message in messages:
            assert "id" in message and ("op" in message or "ok" in message), message
            if message.get("ok") is False:
                assert isinstance(message["error"], str), message
    transcript = re.findall(r"^[→←] (\{.*\})", text, re.M)
    assert len(transcript) >= 20
    for line in transcript:
        assert "id" in json.loads(line)
