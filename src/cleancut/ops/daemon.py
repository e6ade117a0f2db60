"""`daemon`: ticks in a loop, and Prometheus metrics on a loopback port.

The metrics are rendered after each tick and served from memory, so a scrape
never waits on the repository; so is the status page (ops/page/server.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cleancut import clock
from cleancut.errors import CleancutError
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile

from .page.server import StatusPageServer
from .prometheus import CONTENT_TYPE, exposition
from .tick import AckFn, Action, BackupFn, no_ack, plain_backup, tick


class MetricsServer:
    def __init__(self, address: str, port: int) -> None:
        if address not in ("127.0.0.1", "::1", "localhost"):
            raise CleancutError(f"metrics bind to loopback only, not {address}")
        self.body = b"# no tick has run yet\n"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = outer.body
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def run_daemon(
    repo: Repository,
    config: ConfigFile,
    interval: float,
    server: MetricsServer | None,
    stop: threading.Event,
    on_tick: Callable[[list[Action]], None],
    backup: BackupFn = plain_backup,
    journal_ack: AckFn = no_ack,
    page: StatusPageServer | None = None,
) -> None:
    """Tick every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        repo.sync_cache()  # other hosts and processes write snapshots too
        try:
            actions = tick(repo, config, backup=backup, journal_ack=journal_ack).actions
        except CleancutError as exc:
            actions = [Action("*", "tick", False, str(exc))]
        on_tick(actions)
        if server is not None:
            try:
                server.body = exposition(repo, config)
            except CleancutError as exc:  # the last figures stay; they carry their time
                on_tick([Action("*", "metrics", False, str(exc))])
        if page is not None:
            page.update(repo, config, clock.now())
        stop.wait(interval)
