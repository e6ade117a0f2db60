"""Control protocol v1 on the wire: one UTF-8 JSON object per line on a Unix stream socket.

Both ends (the SDK inside the agent, the client inside `cleancut backup`) frame
messages here, so a line too long, a line that is not JSON, or a peer that
vanishes mid-line is handled the same way on both sides. docs/protocol.md is
the contract for agents written in other languages.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from cleancut import jsonparse

PROTOCOL = 1
MAX_LINE = 1 << 20  # a message longer than 1 MiB is a bug in the peer, not a big message
OPS = ("hello", "quiesce", "flush", "inflight", "renew", "resume")
CAPABILITIES = ("quiesce", "flush", "inflight", "journal", "inflight_wait")
# `inflight` with `wait_ms` (capability `inflight_wait`): the agent answers once no action
# is intent or started, or when wait_ms has passed; an agent caps the wait at this.
MAX_WAIT_MS = 600_000
# Ledger states; `intent` and `started` hold the external consistency horizon open.
UNSETTLED = ("intent", "started")
INFLIGHT_STATES = ("intent", "started", "unknown")
STATES = ("running", "quiescing", "quiesced")


class WireError(Exception):
    """The peer closed the connection, sent a malformed line, or did not answer in time."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = jsonparse.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message


def reply_problem(op: str, reply: dict[str, Any]) -> str | None:
    """What makes `reply` (to a request `op`, its id already matched) break protocol v1;
    None when it is well formed. Unknown fields are allowed; documented ones must have
    their documented type, and a success reply must carry what the operation promises."""
    ok = reply.get("ok")
    if type(ok) is not bool:
        return f"{op} reply has ok {_shown(ok)}; protocol v1 wants true or false"
    if not ok:
        error = reply.get("error")
        return None if isinstance(error, str) else f"{op} error reply has error {_shown(error)}"
    check = _SUCCESS.get(op)
    return check(reply) if check else None


def _shown(value: object) -> str:
    """A value for an error message: its JSON text (cut short) and its JSON type."""
    text = json.dumps(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{text} ({article} {kind})" if value is not None else "missing or null"


def _is_int(value: object) -> bool:
    return type(value) is int


def _optional(reply: dict[str, Any], name: str, valid: bool, want: str) -> str | None:
    if name in reply and not valid:
        return f"{name} is {_shown(reply[name])}, not {want}"
    return None


def _hello_problem(reply: dict[str, Any]) -> str | None:
    caps = reply.get("capabilities")
    return (
        (None if _is_int(reply.get("protocol")) else
         f"protocol is {_shown(reply.get('protocol'))}, not an integer")
        or _optional(reply, "agent", isinstance(reply.get("agent"), str), "a string")
        or _optional(reply, "capabilities",
                     isinstance(caps, list) and all(isinstance(c, str) for c in caps),
                     "a list of strings")
        or _optional(reply, "state", reply.get("state") in STATES, "running/quiescing/quiesced")
    )


def _quiesce_problem(reply: dict[str, Any]) -> str | None:
    if reply.get("state") != "quiesced":
        return f"state is {_shown(reply.get('state'))}, not \"quiesced\""
    return inflight_problem(reply.get("inflight")) if "inflight" in reply else None


def _flush_problem(reply: dict[str, Any]) -> str | None:
    if reply.get("flushed") is not True:
        return f"flushed is {_shown(reply.get('flushed'))}, not true"
    seq = reply.get("journal_seq")
    return _optional(reply, "journal_seq", seq is None or (_is_int(seq) and seq >= 0),
                     "a non-negative integer")


def _renew_problem(reply: dict[str, Any]) -> str | None:
    return _optional(reply, "state", reply.get("state") == "quiesced", '"quiesced"')


def inflight_problem(items: object) -> str | None:
    """What is wrong with an `inflight` list; None when every action is well formed."""
    if not isinstance(items, list):
        return f"inflight is {_shown(items)}, not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"inflight[{i}] is {_shown(item)}, not an object"
        for name in ("key", "kind", "since"):
            if not isinstance(item.get(name), str):
                return f"inflight[{i}].{name} is {_shown(item.get(name))}, not a string"
        if item.get("state") not in INFLIGHT_STATES:
            return f"inflight[{i}].state is {_shown(item.get('state'))}, not intent/started/unknown"
    return None


_SUCCESS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "hello": _hello_problem,
    "quiesce": _quiesce_problem,
    "flush": _flush_problem,
    "inflight": lambda reply: inflight_problem(reply.get("inflight")),
    "renew": _renew_problem,
}


class LineReader:
    """Reads newline-terminated messages from a socket, keeping what follows a newline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self, deadline: float | None = None) -> bytes | None:
        """The next line without its newline; None when the peer closed cleanly between lines.

        With `deadline` (a time.monotonic() instant), every wait on the socket is
        bounded by the time left, so a peer that trickles a byte at a time cannot
        stretch the wait: TimeoutError once it has passed. Without it, the socket's
        own timeout applies per read. A line longer than MAX_LINE is a WireError.
        """
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise WireError(f"message longer than {MAX_LINE} bytes")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("deadline passed")
                self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                if self.buffer:
                    raise WireError("connection closed in the middle of a message")
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        if len(line) > MAX_LINE:
            raise WireError(f"message longer than {MAX_LINE} bytes")
        return line
