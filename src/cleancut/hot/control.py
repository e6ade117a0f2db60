"""The backup side's end of the control socket: one request, one reply, each bounded in time.

Every call has a deadline, because the agent on the other end may be hung;
what a silent or vanished agent means (a miss, an unreachable agent) is for
the orchestrator to decide, so failures surface as exceptions it can tell apart.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from cleancut.errors import AgentMisbehaved, AgentUnreachable, UsageError
from cleancut.sdk.wire import PROTOCOL, LineReader, WireError, decode, encode, reply_problem

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0


class AgentTimeout(Exception):
    """The agent did not reply within the deadline."""


class AgentClosed(Exception):
    """The agent closed the connection or sent something that is not protocol v1."""


def parse_address(address: str) -> str:
    """`unix:PATH` -> PATH (the only transport of protocol v1)."""
    scheme, sep, path = address.partition(":")
    if not sep or scheme != "unix" or not path:
        raise UsageError(f"--agent {address}: expected unix:PATH (a Unix socket path)")
    return path


class AgentClient:
    def __init__(self, address: str) -> None:
        self.path = parse_address(address)
        self.sock: socket.socket | None = None
        self.reader: LineReader | None = None
        self._next_id = 0
        self._lock = threading.Lock()  # the lease renewer shares the connection
        self._abandoned: set[int] = set()  # ids of requests whose reply we stopped waiting for

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise AgentUnreachable(
                f"no agent listening on unix:{self.path} ({exc.strerror}); "
                "is it running with hot backup enabled?"
            ) from None
        except OSError as exc:
            sock.close()
            raise AgentUnreachable(f"cannot connect to unix:{self.path}: {exc}") from None
        self.sock = sock
        self.reader = LineReader(sock)

    def request(self, op: str, timeout: float = REPLY_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        """Send one request and return its reply, all within `timeout` seconds from now.

        The bound is a deadline: waiting for the connection (the lease renewer shares
        it), blank lines, replies to requests abandoned earlier and a reply trickled a
        byte at a time all count against it. A reply that breaks protocol v1 raises
        AgentMisbehaved.
        """
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            raise AgentTimeout(f"no reply to {op} within {timeout:g}s (connection busy)")
        try:
            return self._request(op, timeout, deadline, fields)
        finally:
            self._lock.release()

    def request_then(
        self,
        op: str,
        fields: dict[str, Any],
        then: str,
        timeout: float,
        sent: Callable[[], None],
    ) -> tuple[dict[str, Any], bool]:
        """Send `op` and, right behind it, `then` (no fields) in one write, before reading
        either reply (protocol v1 allows pipelining; replies come in request order); call
        `sent` once both are written. Returns `op`'s reply and whether `then` was answered
        within the same deadline (a reply that does not come is abandoned: a late one is
        skipped by the next request). Errors as for request()."""
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            raise AgentTimeout(f"no reply to {op} within {timeout:g}s (connection busy)")
        try:
            if self.sock is None or self.reader is None:
                raise AgentClosed("not connected")
            first, second = self._next_id + 1, self._next_id + 2
            self._next_id = second
            try:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                self.sock.sendall(
                    encode({"id": first, "op": op, **fields}) + encode({"id": second, "op": then})
                )
            except TimeoutError:
                self._abandoned.update((first, second))
                raise AgentTimeout(f"no reply to {op} within {timeout:g}s") from None
            except OSError as exc:
                raise AgentClosed(f"connection lost during {op}: {exc}") from None
            sent()
            try:
                reply = self._read_reply(op, first, timeout, deadline)
            except AgentTimeout:
                self._abandoned.add(second)
                raise
            try:
                self._read_reply(then, second, timeout, deadline)
            except (AgentTimeout, AgentClosed, AgentMisbehaved):
                return reply, False
            return reply, True
        finally:
            self._lock.release()

    def _request(
        self, op: str, timeout: float, deadline: float, fields: dict[str, Any]
    ) -> dict[str, Any]:
        if self.sock is None or self.reader is None:
            raise AgentClosed("not connected")
        self._next_id += 1
        rid = self._next_id
        try:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self.sock.sendall(encode({"id": rid, "op": op, **fields}))
        except TimeoutError:
            self._abandoned.add(rid)
            raise AgentTimeout(f"no reply to {op} within {timeout:g}s") from None
        except OSError as exc:
            raise AgentClosed(f"connection lost during {op}: {exc}") from None
        return self._read_reply(op, rid, timeout, deadline)

    def _read_reply(self, op: str, rid: int, timeout: float, deadline: float) -> dict[str, Any]:
        """The reply to request `rid`, skipping late replies to abandoned requests."""
        assert self.sock is not None and self.reader is not None
        try:
            while True:
                line = self.reader.read(deadline)
                if line is None:
                    raise AgentClosed(f"the agent closed the connection during {op}")
                if not line.strip():
                    continue
                try:
                    reply = decode(line)
                except WireError as exc:  # a whole line, but not a JSON object
                    raise self._misbehaved(f"{op} reply: {exc}") from None
                got = reply.get("id")
                if type(got) is int and got in self._abandoned:
                    self._abandoned.discard(got)  # late reply to a request we gave up on
                    continue
                if type(got) is not int or got != rid:
                    raise self._misbehaved(f"{op} request {rid} answered with id {got!r}")
                problem = reply_problem(op, reply)
                if problem:
                    raise self._misbehaved(problem)
                return reply
        except TimeoutError:
            self._abandoned.add(rid)
            raise AgentTimeout(f"no reply to {op} within {timeout:g}s") from None
        except WireError as exc:
            raise AgentClosed(f"bad reply to {op}: {exc}") from None
        except OSError as exc:
            raise AgentClosed(f"connection lost during {op}: {exc}") from None

    def _misbehaved(self, problem: str) -> AgentMisbehaved:
        return AgentMisbehaved(f"agent at unix:{self.path} broke protocol v1: {problem}")

    def hello(self) -> dict[str, Any]:
        try:
            reply = self.request("hello", protocol=PROTOCOL)
        except (AgentTimeout, AgentClosed) as exc:
            raise AgentUnreachable(
                f"agent at unix:{self.path} did not answer hello: {exc}"
            ) from None
        if not reply.get("ok") or reply.get("protocol") != PROTOCOL:
            raise AgentUnreachable(
                f"agent at unix:{self.path} does not speak protocol {PROTOCOL}: "
                f"{reply.get('error') or reply.get('protocol')}"
            )
        return reply

    def peer_pid(self) -> int | None:
        """The agent's process id from the socket's credentials (Linux SO_PEERCRED)."""
        if self.sock is None or not hasattr(socket, "SO_PEERCRED"):
            return None
        try:
            raw = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        pid = struct.unpack("3i", raw)[0]
        return pid or None

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
