"""The Python SDK an agent embeds to be backed up hot: a few lines in the agent.

    server = ControlServer("/run/myagent/cleancut.sock", agent="myagent", ledger=Ledger(path))
    server.on_flush(save_memory)
    server.start()
    ...
    with server.turn():          # around every unit of work that writes the workspace
        handle(message)

It serves control protocol v1 (docs/protocol.md) on a background thread. A
`quiesce` closes the turn gate: new turns wait, running turns finish, and once
none is open the agent is quiesced. Quiesce is a *lease*: if neither `renew`
nor `resume` arrives before it ends, or the connection that asked for it
closes, the SDK resumes on its own, so a backup process that dies at any
instant never leaves the agent paused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cleancut.errors import NotOurs

from .ledger import Ledger
from .wire import MAX_WAIT_MS, PROTOCOL, LineReader, WireError, decode, encode

RUNNING, QUIESCING, QUIESCED = "running", "quiescing", "quiesced"
DEFAULT_QUIESCE_TIMEOUT_MS = 60_000
DEFAULT_LEASE_MS = 30_000
MAX_LEASE_MS = 600_000  # a lease is a heartbeat, not a way to park an agent for hours
LEASE_CHECK_S = 0.02
PEER_CHECK_S = 0.05  # how often a waiting quiesce looks whether its client is still there


class ControlServer:
    """Serves the control socket and owns the turn gate, the lease and the flush timer."""

    def __init__(
        self,
        socket_path: str | Path,
        agent: str = "agent",
        ledger: Ledger | None = None,
        flush_interval: float | None = 15.0,
        journal_seq: Callable[[], int] | None = None,
    ) -> None:
        self.socket_path = str(socket_path)
        self.agent = agent
        self.ledger = ledger
        self.flush_interval = flush_interval
        self.journal_seq = journal_seq
        self._flush_callbacks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._state = RUNNING
        self._owner: object | None = None  # the connection holding quiesce
        self._lease_deadline = 0.0
        self._active = 0
        self._flushing = 0
        self._depth = threading.local()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._bound: os.stat_result | None = None
        self._threads: list[threading.Thread] = []
        self._quiesced_at = 0.0
        self.stats: dict[str, float] = {
            "quiesces": 0,
            "timeouts": 0,
            "resumes": 0,
            "lease_expiries": 0,
            "last_pause_ms": 0.0,
            "max_pause_ms": 0.0,
        }

    # --- the agent's side -------------------------------------------------

    @property
    def capabilities(self) -> list[str]:
        caps = ["quiesce", "flush"]
        if self.ledger is not None:
            caps += ["inflight", "inflight_wait"]
        if self.journal_seq is not None:
            caps.append("journal")
        return caps

    @property
    def state(self) -> str:
        with self._cond:
            return self._state

    def on_flush(self, callback: Callable[[], None]) -> None:
        """Make buffered state durable: called on `flush` and every flush interval."""
        self._flush_callbacks.append(callback)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """One unit of work. Waits while quiesced; quiesce waits for it to end.

        Nested turns on one thread (a flush callback inside a turn) do not wait again.
        """
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self.enter_turn()
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                self.leave_turn()

    def enter_turn(self, finishing: bool = False) -> None:
        """Open a turn that is not tied to a thread (a graph run hops between threads and
        coroutines); every call is matched by one `leave_turn()`. Waits while quiesced.

        A `finishing` turn completes work that an open turn already began (a write that a
        running step handed to another thread): it is admitted while quiescing, so the
        quiesce waits for it instead of the step waiting for the quiesce, but not once
        quiesced.
        """
        with self._cond:
            while not self._admits(finishing):
                self._cond.wait()
            self._active += 1

    def try_enter_turn(self, finishing: bool = False) -> bool:
        """`enter_turn` without waiting: False (and no turn) when a quiesce holds turns."""
        with self._cond:
            if not self._admits(finishing):
                return False
            self._active += 1
            return True

    def wait_admitted(self, timeout: float, finishing: bool = False) -> None:
        """Wait at most `timeout` seconds until a turn would be admitted (taking none):
        what async code runs in a worker thread before `try_enter_turn`."""
        with self._cond:
            self._cond.wait_for(lambda: self._admits(finishing), timeout)

    def leave_turn(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def _admits(self, finishing: bool) -> bool:
        return (
            self._state == RUNNING
            or self._stopping.is_set()
            or (finishing and self._state == QUIESCING)
        )

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and serve it on background threads."""
        path = self.socket_path
        _remove_stale_socket(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket controls the agent: owner only
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        listener.listen(8)
        self._listener = listener
        self._bound = os.lstat(path)  # what stop() may remove: this socket, not a successor
        self._spawn(self._accept_loop, "cleancut-accept")
        self._spawn(self._lease_loop, "cleancut-lease")
        if self.flush_interval:
            self._spawn(self._flush_loop, "cleancut-flush")

    def stop(self) -> None:
        self._stopping.set()
        self._resume("stop")
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(self.socket_path)
                if stat.S_ISSOCK(st.st_mode) and _same_file(st, self._bound):
                    os.unlink(self.socket_path)
        with self._cond:
            self._cond.notify_all()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- serving ----------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(self._serve, "cleancut-conn", conn)

    def _serve(self, conn: socket.socket) -> None:
        reader = LineReader(conn)
        try:
            while not self._stopping.is_set():
                try:
                    line = reader.read()
                except WireError as exc:
                    self._send(conn, {"id": None, "ok": False, "error": f"bad request: {exc}"})
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                try:
                    request = decode(line)
                except WireError as exc:
                    self._send(conn, {"id": None, "ok": False, "error": f"bad request: {exc}"})
                    continue
                self._send(conn, self._handle(conn, request))
        except OSError:
            return
        finally:
            # A closed connection while quiesced means resume (docs/architecture.md: the lease).
            with self._cond:
                mine = self._owner is conn and self._state != RUNNING
            if mine:
                self._resume("connection closed")
            conn.close()

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(encode(message))

    def _handle(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        op = request.get("op")
        try:
            if op == "hello":
                reply = self._hello(request)
            elif op == "quiesce":
                reply = self._quiesce(conn, request)
            elif op == "flush":
                reply = self._flush()
            elif op == "inflight":
                reply = {"ok": True, "inflight": self._inflight(request, conn)}
            elif op == "renew":
                reply = self._renew(conn, request)
            elif op == "resume":
                self._resume("resume")
                reply = {"ok": True, "state": RUNNING}
            else:
                reply = {"ok": False, "error": f"unknown op: {op}"}
        except (TypeError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # an agent's flush callback failed: report, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"id": rid, **reply}

    def _hello(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = request.get("protocol")
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < PROTOCOL:
            return {"ok": False, "error": f"unsupported protocol: {wanted!r} (this agent speaks 1)"}
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "agent": self.agent,
            "capabilities": self.capabilities,
            "state": self.state,
        }

    def _quiesce(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        timeout_ms = _milliseconds(request, "timeout_ms", DEFAULT_QUIESCE_TIMEOUT_MS)
        lease_ms = min(_milliseconds(request, "lease_ms", DEFAULT_LEASE_MS), MAX_LEASE_MS)
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cond:
            if self._state != RUNNING and self._owner is not conn:
                return {"ok": False, "error": "busy: another client holds quiesce"}
            if self._state == QUIESCED:  # asked again by its holder: a renewal
                self._lease_deadline = time.monotonic() + lease_ms / 1000
                return {"ok": True, "state": QUIESCED, "inflight": self._inflight({}, conn)}
            self._state, self._owner = QUIESCING, conn
            self.stats["quiesces"] += 1
            while self._active and self._holds(conn, QUIESCING):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, PEER_CHECK_S))
                if _closed(conn):  # the backup died while waiting: stop holding turns now
                    if self._holds(conn, QUIESCING):
                        self._state, self._owner = RUNNING, None
                        self._cond.notify_all()
                    return {"ok": False, "error": "cancelled: connection closed"}
            if not self._holds(conn, QUIESCING):  # resumed by another client while waiting
                return {"ok": False, "error": "cancelled: resumed while quiescing"}
            if self._active:
                self._state, self._owner = RUNNING, None
                self.stats["timeouts"] += 1
                self._cond.notify_all()
                return {"ok": False, "error": "timeout"}
            self._state = QUIESCED
            self._quiesced_at = time.monotonic()
            self._lease_deadline = self._quiesced_at + lease_ms / 1000
            if self.ledger is not None:
                self.ledger.hold()
        return {"ok": True, "state": QUIESCED, "inflight": self._inflight({}, conn)}

    def _holds(self, conn: socket.socket, state: str) -> bool:
        return self._state == state and self._owner is conn

    def _flush(self) -> dict[str, Any]:
        with self._cond:
            quiesced = self._state == QUIESCED
            if quiesced:
                self._flushing += 1  # the lease does not end under a running flush
        if quiesced:
            try:
                self._run_flush_callbacks()  # turns are held: nothing races the callbacks
            finally:
                with self._cond:
                    self._flushing -= 1
        else:
            with self.turn():
                self._run_flush_callbacks()
        if self.ledger is not None:
            self.ledger.write_pending()
        reply: dict[str, Any] = {"ok": True, "flushed": True}
        if self.journal_seq is not None:
            reply["journal_seq"] = self.journal_seq()
        return reply

    def _run_flush_callbacks(self) -> None:
        for callback in self._flush_callbacks:
            callback()

    def _inflight(self, request: dict[str, Any], conn: socket.socket) -> list[dict[str, Any]]:
        """The ledger's unsettled actions; with `wait_ms`, once none is intent or started
        (or wait_ms has passed). Only this connection waits: the others are served. The
        wait looks at the connection every PEER_CHECK_S: a backup that dies while it
        waits must not keep the agent quiesced for the rest of the wait."""
        if self.ledger is None:
            return []
        if "wait_ms" not in request:
            return self.ledger.inflight()
        deadline = time.monotonic() + min(_milliseconds(request, "wait_ms", 0), MAX_WAIT_MS) / 1000
        while True:
            left = deadline - time.monotonic()
            actions = self.ledger.wait_settled(max(0.0, min(left, PEER_CHECK_S)))
            if left <= PEER_CHECK_S or self.ledger.settled() or _closed(conn):
                return actions

    def _renew(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        lease_ms = min(_milliseconds(request, "lease_ms", DEFAULT_LEASE_MS), MAX_LEASE_MS)
        with self._cond:
            if self._state != QUIESCED:
                # The lease ended (or someone resumed): the holder must not treat its
                # capture as taken while quiesced.
                return {"ok": False, "error": "not quiesced: the lease ended or the agent resumed"}
            if self._owner is not conn:
                return {"ok": False, "error": "busy: another client holds quiesce"}
            self._lease_deadline = time.monotonic() + lease_ms / 1000
        return {"ok": True, "state": QUIESCED}

    def _resume(self, why: str) -> None:
        with self._cond:
            self._resume_locked()
        if why == "lease expired":
            print("cleancut-sdk: quiesce lease expired; resuming on our own", file=sys.stderr)

    def _resume_locked(self) -> None:
        if self._state == RUNNING:
            return
        was_quiesced = self._state == QUIESCED
        self._state, self._owner = RUNNING, None
        self.stats["resumes"] += 1
        if was_quiesced:
            pause_ms = (time.monotonic() - self._quiesced_at) * 1000
            self.stats["last_pause_ms"] = round(pause_ms, 3)
            self.stats["max_pause_ms"] = max(self.stats["max_pause_ms"], pause_ms)
        if self.ledger is not None:
            self.ledger.release()
        self._cond.notify_all()

    # --- timers -----------------------------------------------------------

    def _lease_loop(self) -> None:
        while not self._stopping.wait(LEASE_CHECK_S):
            with self._cond:
                expired = (
                    self._state == QUIESCED
                    and not self._flushing
                    and time.monotonic() > self._lease_deadline
                )
                if expired:  # decided and applied under one lock: a renew cannot slip between
                    self.stats["lease_expiries"] += 1
                    self._resume_locked()
            if expired:
                print("cleancut-sdk: quiesce lease expired; resuming on our own", file=sys.stderr)

    def _flush_loop(self) -> None:
        assert self.flush_interval
        while not self._stopping.wait(self.flush_interval):
            with self.turn():
                if self._stopping.is_set():
                    return
                with contextlib.suppress(Exception):  # a failing callback must not kill the timer
                    self._run_flush_callbacks()


def _milliseconds(request: dict[str, Any], name: str, default: int) -> int:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of milliseconds")
    return int(value)


def _closed(conn: socket.socket) -> bool:
    """Whether the peer has closed the connection (pending requests are not consumed)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _remove_stale_socket(path: str) -> None:
    """Remove a socket left at `path` by an agent that died, and nothing else.

    Only a socket that nobody answers on is stale. A regular file, a directory, a
    symlink or anything else there was not left by us: NotOurs, and it stays.
    A socket someone serves: RuntimeError (another agent runs).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise NotOurs(
            f"control socket path {path} holds a {_kind(st.st_mode)}, not a socket: "
            "refusing to delete it; choose another socket path or remove it yourself"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # nobody serves it: left by a process that died
        return
    except FileNotFoundError:
        return
    finally:
        probe.close()
    raise RuntimeError(f"another process serves {path}")


def _same_file(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special file"
