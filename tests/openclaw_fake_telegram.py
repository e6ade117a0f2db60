"""Test equipment: a stand-in Telegram Bot API on loopback, for real outbound deliveries.

A gateway whose Telegram channel points its `apiRoot` here starts the channel as it
would against Telegram (getMe, webhook and command setup, long polls answered empty)
and sends through it. `sendMessage` is held until `release()`: a delivery the gateway
has started to send, and which has no receipt yet, stays pending in its outbound queue
for as long as the test wants. Nothing leaves loopback.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT = {"id": 4242, "is_bot": True, "first_name": "cleancut-test", "username": "cleancut_test_bot"}


class FakeTelegram:
    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[str] = []
        self.sending = threading.Event()  # a sendMessage arrived and is held
        self.released = threading.Event()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTelegram:
        self.thread.start()
        return self

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.stopping.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, method: str) -> Any:
        if method == "sendMessage":
            self.sending.set()
            self.released.wait()
            return {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}
        if method == "getUpdates":
            self.stopping.wait(5)  # a long poll with nothing new
            return []
        if method == "getMe":
            return BOT
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                method = self.path.rsplit("/", 1)[-1].split("?")[0]
                fake.calls.append(method)
                body = json.dumps({"ok": True, "result": fake._answer(method)}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the gateway gave up on the request

            do_GET = do_POST = _serve

            def log_message(self, *args: object) -> None:
                pass

        return Handler
