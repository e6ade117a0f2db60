"""Serves the status page on loopback: `/` the page, `/status.json` what `status --json` prints.

Both bodies are rendered by the daemon's loop after each tick (`update`) and served
from memory, so a reader never waits on, or races with, the repository. The page
is read-only: only GET and HEAD are answered. A Content-Security-Policy allows the
page's own inline style and its one script (by hash) and nothing else, a second
fence behind the escaping of user text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cleancut.errors import CleancutError
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile

from ..history import history
from ..status import status
from .charts import esc
from .document import render_page
from .style import SCRIPT

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; img-src data:; base-uri 'none'; form-action 'none'"
)
WAITING = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    '<meta http-equiv="refresh" content="5"><title>cleancut status</title>'
    '<link rel="icon" href="data:,"></head>'
    "<body><p>cleancut: the first tick is still running; this page reloads.</p></body></html>\n"
)

ERROR = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    '<title>cleancut status: error</title><link rel="icon" href="data:,"></head>'
    "<body><p>cleancut: the repository could not be read: {error}</p></body></html>\n"
)


def render_status(repo: Repository, config: ConfigFile, now: datetime) -> tuple[bytes, bytes]:
    """The page and the status document, from one StatusOutcome (the `status` command's)."""
    outcome = status(repo, config, now, None, False)
    page = render_page(outcome, history(repo))
    document = json.dumps(outcome.to_json(), indent=2, sort_keys=True, default=str) + "\n"
    return page.encode(), document.encode()  # byte for byte what `status --json` prints


class StatusPageServer:
    def __init__(self, address: str, port: int) -> None:
        if address not in LOOPBACK:
            raise CleancutError(f"the status page binds to loopback only, not {address}")
        self.page = WAITING.encode()
        self.document = b'{"state": "unknown", "sources": []}\n'
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(send_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                path = self.path.split("?")[0].split("#")[0]
                if path in ("/", "/index.html"):
                    body, kind = outer.page, "text/html; charset=utf-8"
                elif path == "/status.json":
                    body, kind = outer.document, "application/json"
                else:
                    self.send_error(404, "no such page: / and /status.json are served")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def update(self, repo: Repository, config: ConfigFile, now: datetime) -> None:
        """Render both bodies from the repository as it is now (called between ticks).

        When the repository cannot be read, the page says so in one line and
        status.json keeps its last good state. Whatever goes wrong here, the daemon
        keeps ticking: the page is for looking, the backups are the job."""
        try:
            self.page, self.document = render_status(repo, config, now)
        except CleancutError as exc:
            self.page = ERROR.format(error=esc(exc)).encode()
        except Exception as exc:  # noqa: BLE001 (a page bug must not stop the backups)
            self.page = ERROR.format(error=esc(f"{type(exc).__name__}: {exc}")).encode()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
