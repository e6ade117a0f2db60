"""Control protocol v1 on the wire: one UTF-8 JSON object per line on a Unix stream socket.

Both ends (the SDK inside the agent, the client inside `cleancut backup`) frame
messages here, so a line too long, a line that is not JSON, or a peer that
vanishes mid-line is handled the same way on both sides. docs/protocol.md is
the contract for agents written in other languages.
"""

from __future__ import annotations

import json
import socket
from typing import Any

PROTOCOL = 1
MAX_LINE = 1 << 20  # a message longer than 1 MiB is a bug in the peer, not a big message
OPS = ("hello", "quiesce", "flush", "inflight", "renew", "resume")
CAPABILITIES = ("quiesce", "flush", "inflight", "journal")
# Ledger states; `intent` and `started` hold the external consistency horizon open.
UNSETTLED = ("intent", "started")
INFLIGHT_STATES = ("intent", "started", "unknown")


class WireError(Exception):
    """The peer closed the connection, sent a malformed line, or did not answer in time."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message


class LineReader:
    """Reads newline-terminated messages from a socket, keeping what follows a newline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> bytes | None:
        """The next line without its newline; None when the peer closed cleanly between lines.

        Socket timeouts propagate as TimeoutError, so the caller decides what a
        silent peer means.
        """
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise WireError(f"message longer than {MAX_LINE} bytes")
            data = self.sock.recv(65536)
            if not data:
                if self.buffer:
                    raise WireError("connection closed in the middle of a message")
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line
