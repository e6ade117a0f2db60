"""A fake OpenAI-compatible model server, the test equipment behind a real OpenClaw gateway.

Standard library only; listens on 127.0.0.1. It answers `GET /v1/models` and
`POST /v1/chat/completions`, streamed (SSE, with a closing usage chunk, as the gateway
always asks) or not. The reply is deterministic: `reply <n>: <last user text>`, where n
counts the user messages of the request, so a test can tell which turn a transcript
ends with and that a continued conversation carried its history.

A user message holding `HANG` starts a reply that does not end until
`POST /control/release` (or the server stops): a turn that never drains.
`GET /control/state` tells how many requests came and how many replies hang now.

Run: python tests/openclaw_fake_model.py PORT
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "fake-model"
HANG_MARK = "HANG"
INTERNAL_MARK = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
# A hung reply gives up by itself after this long, so a forgotten release cannot
# hold a test's gateway forever.
HANG_LIMIT_S = 600.0

_counts = {"requests": 0, "hung": 0, "released": 0}
_counts_lock = threading.Condition()


def _count(name: str, delta: int = 1) -> None:
    with _counts_lock:
        _counts[name] += delta


def _hang() -> None:
    """Hold a reply until the next release (each release frees the replies hung before it)."""
    with _counts_lock:
        _counts["hung"] += 1
        generation = _counts["released"]
        _counts_lock.wait_for(lambda: _counts["released"] > generation, HANG_LIMIT_S)
        _counts["hung"] -= 1


def _release() -> None:
    with _counts_lock:
        _counts["released"] += 1
        _counts_lock.notify_all()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """What the users said, in order: the gateway's own context blocks left out.

    The gateway sends a user message as `[timestamp] text` followed by runtime lines,
    and appends context of its own as extra user messages; only the text is kept.
    """
    texts = []
    for m in messages:
        text = _text_of(m.get("content")).strip()
        if m.get("role") != "user" or not text or text.startswith(INTERNAL_MARK):
            continue
        first = text.splitlines()[0]
        texts.append(re.sub(r"^\[[^\]]*\]\s*", "", first))
    return texts


def reply_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic answer to a conversation."""
    users = user_texts(messages)
    return f"reply {len(users)}: {(users[-1] if users else '')[:200]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/control/state":
            with _counts_lock:
                self._json(200, dict(_counts))
        elif self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "cleancut-tests"}
            ]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/control/release":
            _release()
            self._json(200, {"released": True})
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": "not found"}})
            return
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "bad json"}})
            return
        messages = req.get("messages") or []
        text = reply_for(messages)
        _count("requests")
        said = user_texts(messages)
        hang = bool(said) and HANG_MARK in said[-1]
        usage = {"prompt_tokens": max(1, len(raw) // 4), "completion_tokens": len(text.split()),
                 "total_tokens": max(1, len(raw) // 4) + len(text.split())}
        if req.get("stream"):
            self._stream(req.get("model") or MODEL_ID, text, usage, hang)
        else:
            self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model") or MODEL_ID,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage,
            })

    def _event(self, body: dict[str, Any] | str) -> None:
        data = body if isinstance(body, str) else json.dumps(body)
        chunk = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _stream(self, model: str, text: str, usage: dict[str, int], hang: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model}
        words = text.split(" ")
        first = {"role": "assistant", "content": words[0]}
        self._event(base | {"choices": [{"index": 0, "delta": first, "finish_reason": None}]})
        if hang:
            _hang()
        for word in words[1:]:
            delta = {"content": " " + word}
            self._event(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event(base | {"choices": [], "usage": usage})
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
