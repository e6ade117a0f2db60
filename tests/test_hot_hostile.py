"""Hostile agents: `cleancut backup --agent` against peers that lie, stall or break protocol v1.

Each fake agent here is a scripted server on a real Unix socket, in a thread of
this process; cleancut runs as its own process, as an operator would run it.
What every test holds to, whatever the agent does: no traceback, one line on
stderr, a distinct exit code, no snapshot labelled `quiesced` unless the agent
kept its word, `resume` sent whenever a quiesce was asked, and an end within
the step deadlines (the bounds asserted are generous correctness bounds: a
per-read timeout that an agent can extend forever would fail them by hanging).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import CLI, assert_no_traceback

from cleancut.errors import AgentMisbehaved, NotOurs, QuiesceMissed
from cleancut.hot.session import SessionReport, quiesced
from cleancut.restorer.inflight import write_inflight
from cleancut.sdk.ledger import Ledger
from cleancut.sdk.server import ControlServer

HELLO = {"ok": True, "protocol": 1, "agent": "fake", "capabilities": ["quiesce", "flush"],
         "state": "running"}
QUIESCED = {"ok": True, "state": "quiesced", "inflight": []}
GOOD: dict[str, dict[str, Any]] = {
    "hello": HELLO,
    "quiesce": QUIESCED,
    "flush": {"ok": True, "flushed": True},
    "inflight": {"ok": True, "inflight": []},
    "renew": {"ok": True, "state": "quiesced"},
    "resume": {"ok": True, "state": "running"},
}
# A handler gets the request and the connection; it answers (or misbehaves) itself.
Handler = Callable[[dict[str, Any], "Conn"], None]


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = threading.Event()
        self.stalled = False  # a request is being answered forever: later ones wait

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed.set()
            return False

    def reply(self, request: dict[str, Any], body: dict[str, Any]) -> None:
        self.send(json.dumps({"id": request.get("id"), **body}).encode() + b"\n")

    def forever(self, data: bytes | Callable[[], bytes], every: float = 0.2) -> None:
        """Send `data` every `every` seconds until the peer goes away (in a thread)."""
        self.stalled = True

        def run() -> None:
            while not self.closed.wait(every):
                if not self.send(data() if callable(data) else data):
                    return

        threading.Thread(target=run, daemon=True).start()


class FakeAgent:
    """Answers every op correctly unless `handlers` says otherwise; records the ops."""

    def __init__(self, path: Path, handlers: dict[str, Handler] | None = None) -> None:
        self.path = path
        self.handlers = handlers or {}
        self.ops: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"unix:{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Conn(sock)
        buffer = b""
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, _, buffer = buffer.partition(b"\n")
                    request = json.loads(line)
                    op = request["op"]
                    self.ops.append(op)
                    if conn.stalled:
                        # Requests are answered in order (docs/protocol.md): one pipelined
                        # behind a request still being answered is never reached.
                        continue
                    handler = self.handlers.get(op)
                    if handler is None:
                        conn.reply(request, GOOD[op])
                    else:
                        handler(request, conn)
        conn.closed.set()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[..., FakeAgent]]:
    made: list[FakeAgent] = []

    def make(handlers: dict[str, Handler] | None = None) -> FakeAgent:
        agent = FakeAgent(tmp_path / f"fake{len(made)}.sock", handlers)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "notes.txt").write_text("first line\n")
    (root / "state.json").write_text('{"n": 1}')
    return root


def backup(cli: CLI, ws: Path, agent: FakeAgent, *extra: str) -> tuple[Any, float]:
    started = time.monotonic()
    res = cli.run("backup", str(ws), "--name", "ws", "--agent", agent.address,
                  "--quiesce-timeout", "500ms", "--lease", "3s", "--horizon", "1s", *extra,
                  timeout=120)
    return res, time.monotonic() - started


def stored(cli: CLI) -> list[str]:
    return [s["consistency"] for s in json.loads(cli.ok("snapshots", "--json").out)]


def misses(cli: CLI) -> int:
    health = json.loads(cli.run("status", "--json").out)
    source = next(s for s in health["sources"] if s["name"] == "ws")
    return int(source["consecutive_quiesce_misses"])


# --- item 9: deadlines no agent behaviour can extend ------------------------------

STALLS: dict[str, Callable[[dict[str, Any], Conn], None]] = {
    # One byte of an endless line every 0.2 s: each read returns, none ends.
    "trickled bytes": lambda req, conn: conn.forever(b" "),
    "blank lines": lambda req, conn: conn.forever(b"\n"),
    # A reply begun, then the rest a byte at a time, never its newline.
    "a partial line": lambda req, conn: (conn.send(b'{"id":'), conn.forever(b"1")),
    # Replies to requests never sent: skipped by a lax client, forever.
    "replies with other ids": lambda req, conn: conn.forever(
        json.dumps({"id": 999, **QUIESCED}).encode() + b"\n"
    ),
}


def session(agent: FakeAgent, capture: Callable[[], Any] = lambda: "captured") -> Any:
    """The backup side's protocol session, in this process (what `backup --agent` runs)."""
    return quiesced(agent.address, 0.1, 1.0, capture, SessionReport(), lease=3.0)


@pytest.mark.parametrize("stall", sorted(STALLS))
@pytest.mark.parametrize("step", ["quiesce", "flush", "renew"])
def test_a_stalling_agent_cannot_hold_a_step_past_its_deadline(
    fake: Callable[..., FakeAgent], stall: str, step: str
) -> None:
    agent = fake({step: STALLS[stall]})
    started = time.monotonic()
    with pytest.raises((QuiesceMissed, AgentMisbehaved)) as raised:
        session(agent)
    took = time.monotonic() - started
    if stall == "replies with other ids":
        assert isinstance(raised.value, AgentMisbehaved)
        assert "answered with id 999" in str(raised.value)
    else:
        assert isinstance(raised.value, QuiesceMissed)
    # quiesce: 0.1 s + 2 s grace; the other steps: the 3 s lease; then resume's own 2 s.
    assert took < 3 + 2 + 10, took
    assert agent.ops[-1] == "resume"  # still asked to run again, after the deadline


def test_a_stalled_quiesce_is_a_miss_for_the_operator(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    agent = fake({"quiesce": STALLS["trickled bytes"]})
    res, took = backup(repo_cli, ws, agent)
    assert res.code == 7, res.err
    assert_no_traceback(res)
    assert "quiesce missed" in res.err
    assert took < 0.5 + 2 + 2 + 10, took
    assert agent.ops[-1] == "resume"
    assert stored(repo_cli) == []
    assert misses(repo_cli) == 1


def test_a_silent_resume_does_not_hold_the_session(fake: Callable[..., FakeAgent]) -> None:
    agent = fake({"resume": STALLS["trickled bytes"]})
    started = time.monotonic()
    assert session(agent) == "captured"
    assert time.monotonic() - started < 2 + 10


# --- item 8: replies are validated strictly -----------------------------------------

BAD_REPLIES: dict[str, tuple[str, dict[str, Any]]] = {
    "ok is the string false": ("quiesce", {"ok": "false", "state": "quiesced"}),
    "ok is the string true": ("quiesce", {"ok": "true", "state": "quiesced"}),
    "ok is 1": ("quiesce", {"ok": 1, "state": "quiesced"}),
    "ok missing": ("quiesce", {"state": "quiesced"}),
    "quiesce claims running": ("quiesce", {"ok": True, "state": "running"}),
    "quiesce without state": ("quiesce", {"ok": True}),
    "quiesce inflight not a list": ("quiesce", {**QUIESCED, "inflight": "none"}),
    "error is not a string": ("quiesce", {"ok": False, "error": {"why": "no"}}),
    "hello protocol is a string": ("hello", {**HELLO, "protocol": "1"}),
    "hello protocol is true": ("hello", {**HELLO, "protocol": True}),
    "capabilities not a list": ("hello", {**HELLO, "capabilities": "quiesce"}),
    "hello state made up": ("hello", {**HELLO, "state": "napping"}),
    "flushed is a string": ("flush", {"ok": True, "flushed": "yes"}),
    "flushed is false": ("flush", {"ok": True, "flushed": False}),
    "journal_seq negative": ("flush", {"ok": True, "flushed": True, "journal_seq": -4}),
    "journal_seq a string": ("flush", {"ok": True, "flushed": True, "journal_seq": "9"}),
    "inflight is not a list": ("inflight", {"ok": True, "inflight": {"key": "k"}}),
    "inflight missing": ("inflight", {"ok": True}),
    "inflight item without key": (
        "inflight", {"ok": True, "inflight": [{"kind": "x", "state": "started", "since": "t"}]}
    ),
    "inflight item in a made-up state": (
        "inflight",
        {"ok": True, "inflight": [{"key": "k", "kind": "x", "state": "sent", "since": "t"}]},
    ),
    "renew says running": ("renew", {"ok": True, "state": "running"}),
}


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
def test_a_reply_that_breaks_the_protocol_is_misbehaviour_not_a_quiesce(
    fake: Callable[..., FakeAgent], case: str
) -> None:
    op, body = BAD_REPLIES[case]
    agent = fake({op: lambda req, conn: conn.reply(req, body)})
    captured: list[bool] = []
    with pytest.raises(AgentMisbehaved, match="broke protocol v1"):
        session(agent, lambda: captured.append(True))
    if op != "hello":
        assert agent.ops[-1] == "resume"
    if op in ("hello", "quiesce", "flush", "inflight"):
        assert captured == []  # nothing was captured on the strength of a broken reply


@pytest.mark.parametrize("line", [b"garbage\n", b"[1, 2]\n", b'"quiesced"\n', b"\xff\xfe\n"])
def test_a_reply_line_that_is_not_a_json_object_is_misbehaviour(
    fake: Callable[..., FakeAgent], line: bytes
) -> None:
    agent = fake({"quiesce": lambda req, conn: conn.send(line)})
    with pytest.raises(AgentMisbehaved, match="quiesce reply: (not a JSON line|a message must)"):
        session(agent)
    assert agent.ops[-1] == "resume"


def test_quiesce_ok_as_a_string_is_exit_19_and_counted_as_a_miss(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    agent = fake({"quiesce": lambda req, conn: conn.reply(req, {"ok": "false", "error": "x"})})
    res, _ = backup(repo_cli, ws, agent)
    assert res.code == 19, res.err
    assert_no_traceback(res)
    assert 'ok "false" (a string)' in res.err
    assert agent.ops[-1] == "resume"
    assert stored(repo_cli) == []
    assert misses(repo_cli) == 1


def test_an_inflight_reply_that_is_not_a_list_is_one_line_and_exit_19(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    agent = fake({"inflight": lambda req, conn: conn.reply(req, {"ok": True, "inflight": 7})})
    res, _ = backup(repo_cli, ws, agent)
    assert res.code == 19, res.err
    assert_no_traceback(res)
    assert "inflight is 7 (an integer), not a list" in res.err


def test_a_misbehaving_agent_with_a_fallback_gets_the_fallback_and_exit_19(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    agent = fake({"quiesce": lambda req, conn: conn.reply(req, {"ok": "false"})})
    res, _ = backup(repo_cli, ws, agent, "--fallback", "unquiesced", "--json")
    assert res.code == 19, res.err
    summary = json.loads(res.out)
    assert summary["consistency"] == "unquiesced"
    assert summary["quiesce_missed"] is True
    assert stored(repo_cli) == ["unquiesced"]


# --- item 8: files that change while the agent claims to be quiesced ----------------

IN_OPEN = 0x20


def _inotify() -> tuple[Callable[[str, int], int], Callable[[], int], int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())

    def watch(path: str, mask: int) -> int:
        wd = libc.inotify_add_watch(fd, path.encode(), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        return int(wd)

    def wait() -> int:
        header = os.read(fd, 4096)
        return int(struct.unpack_from("iIII", header)[1])

    return watch, wait, fd


def test_writes_during_a_claimed_quiesce_are_caught_and_not_stored_as_quiesced(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    """The agent acknowledges quiesce, then appends to notes.txt while the capture runs.

    No timing decides it: the agent holds an exclusive lock on its database, which the
    capture must copy, and lets go only after it has seen the capture open that
    database (inotify) and has written notes.txt, a file the capture already checked.
    """
    db = ws / "memory.db"
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("CREATE TABLE m (v TEXT)")
    con.execute("INSERT INTO m VALUES ('before')")
    watch, wait, fd = _inotify()
    released = threading.Event()

    def writes_behind_its_word() -> None:
        wait()  # the capture opened memory.db
        with open(ws / "notes.txt", "a") as f:
            f.write("written while claiming quiesce\n")
        con.execute("ROLLBACK")
        released.set()

    def quiesce(req: dict[str, Any], conn: Conn) -> None:
        # Finishing a unit (allowed): 64 KiB more, so the database's size has moved and
        # the capture must copy it, whatever the timestamps' granularity.
        con.execute("INSERT INTO m VALUES (randomblob(65536))")
        con.execute("BEGIN EXCLUSIVE")
        watch(str(db), IN_OPEN)
        threading.Thread(target=writes_behind_its_word, daemon=True).start()
        conn.reply(req, QUIESCED)

    agent = fake({"quiesce": quiesce})
    try:
        res, _ = backup(repo_cli, ws, agent)
    finally:
        os.close(fd)
        with contextlib.suppress(sqlite3.Error):
            con.close()
    assert released.is_set()
    assert res.code == 19, res.err
    assert_no_traceback(res)
    assert "changed during the capture" in res.err and "notes.txt" in res.err
    assert agent.ops[-1] == "resume"
    assert stored(repo_cli) == []
    assert misses(repo_cli) == 1


def test_an_agent_that_keeps_its_word_is_stored_quiesced(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent]
) -> None:
    agent = fake()
    res, _ = backup(repo_cli, ws, agent, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["consistency"] == "quiesced"
    assert agent.ops == ["hello", "quiesce", "flush", "inflight", "flush", "renew", "resume"]


def test_the_resume_goes_out_with_the_final_renew_and_again_if_unanswered(
    fake: Callable[..., FakeAgent],
) -> None:
    """The pause ends when the resume is sent, in the same write as the final renew
    (docs/protocol.md allows pipelining); an agent that lets that resume go unanswered
    is sent another, as the session always did."""
    held: list[dict[str, Any]] = []

    def renew(request: dict[str, Any], conn: Conn) -> None:
        held.append(request)  # answered only once the resume is in: proof it came unasked

    def resume(request: dict[str, Any], conn: Conn) -> None:
        for waiting in held:
            conn.reply(waiting, GOOD["renew"])
        conn.reply(request, GOOD["resume"])

    agent = fake({"renew": renew, "resume": resume})
    report = SessionReport()
    assert quiesced(agent.address, 0.1, 1.0, lambda: "captured", report, lease=3.0) == "captured"
    assert agent.ops[-2:] == ["renew", "resume"]  # one resume: its answer was read
    assert {"lease_check", "resume"} <= set(report.steps_ms)

    answered: list[bool] = []

    def resume_once_unanswered(request: dict[str, Any], conn: Conn) -> None:
        if answered:
            conn.reply(request, GOOD["resume"])
        answered.append(True)

    again = fake({"resume": resume_once_unanswered})
    assert quiesced(again.address, 0.1, 1.0, lambda: "captured", SessionReport(), lease=3.0)
    assert again.ops[-3:] == ["renew", "resume", "resume"]


# --- item 5: refuse what is not ours ------------------------------------------------


def test_staging_that_holds_the_users_files_is_refused_and_left_intact(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("three years of work")
    agent = fake()
    res, _ = backup(repo_cli, ws, agent, "--staging", str(home))
    assert res.code == 18, res.err
    assert_no_traceback(res)
    assert str(home) in res.err and "new or empty directory" in res.err
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]
    assert (home / "thesis.tex").read_text() == "three years of work"
    assert "quiesce" not in agent.ops  # refused before the agent was paused


def test_a_new_staging_directory_is_claimed_and_reused(
    repo_cli: CLI, ws: Path, fake: Callable[..., FakeAgent], tmp_path: Path
) -> None:
    staging = tmp_path / "new-staging"
    for _ in range(2):
        res, _ = backup(repo_cli, ws, fake(), "--staging", str(staging))
        assert res.code == 0, res.err
    assert (staging / ".cleancut-staging").is_file()


@pytest.mark.parametrize("kind", ["regular file", "directory", "symlink"])
def test_the_sdk_never_deletes_what_is_not_a_stale_socket(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "agent.sock"
    if kind == "regular file":
        path.write_text("the operator's notes")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("kept")
    else:
        (tmp_path / "target").write_text("kept")
        path.symlink_to(tmp_path / "target")
    server = ControlServer(str(path), agent="t")
    with pytest.raises(NotOurs, match=f"holds a {kind}, not a socket"):
        server.start()
    if kind == "regular file":
        assert path.read_text() == "the operator's notes"
    elif kind == "directory":
        assert (path / "inside").read_text() == "kept"
    else:
        assert path.is_symlink() and (tmp_path / "target").read_text() == "kept"


def test_the_sdk_replaces_a_stale_socket_and_refuses_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound, never listening: connecting is refused, as after a crash
    server = ControlServer(str(path), agent="t")
    server.start()
    try:
        with pytest.raises(RuntimeError, match="another process serves"):
            ControlServer(str(path), agent="u").start()
    finally:
        server.stop()
    assert not path.exists()


def test_stop_leaves_a_file_that_replaced_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    server = ControlServer(str(path), agent="t")
    server.start()
    path.unlink()
    path.write_text("someone else's")
    server.stop()
    assert path.read_text() == "someone else's"


def test_a_ledger_opened_on_someone_elses_file_leaves_it_intact(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"line one\nno newline at the end")
    with pytest.raises(NotOurs):
        Ledger(path)
    assert path.read_bytes() == b"line one\nno newline at the end"
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(NotOurs):
        Ledger(binary)
    assert binary.read_bytes() == bytes(range(256))


def test_a_ledgers_torn_tail_is_still_cut(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.intent("k1", "email.send")
    ledger.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key":"k2","sta')
    assert [a["key"] for a in Ledger(path).inflight()] == ["k1"]
    assert path.read_bytes() == whole


def test_restore_never_replaces_an_inflight_file_it_did_not_write(tmp_path: Path) -> None:
    target = tmp_path / "restored"
    mine = tmp_path / "restored.inflight.json"
    mine.write_text("my own file")
    snapshot = SimpleNamespace(id="s", name="n", time="t", consistency="quiesced", capture={})
    assert write_inflight(snapshot, target) is None  # type: ignore[arg-type]
    assert mine.read_text() == "my own file"  # nothing to write: someone else's file stays
    snapshot.capture = {"inflight": [{"key": "k", "kind": "x", "state": "started", "since": "t"}]}
    with pytest.raises(NotOurs, match="not an in-flight list cleancut wrote"):
        write_inflight(snapshot, target)  # type: ignore[arg-type]
    assert mine.read_text() == "my own file"
    snapshot.capture = {}
    mine.write_text(json.dumps({"snapshot": "old", "consistency": "quiesced", "inflight": []}))
    assert write_inflight(snapshot, target) is None  # type: ignore[arg-type]
    assert not mine.exists()  # ours, and stale: removed
