"""A real S3 endpoint for tests: SeaweedFS (`weed mini`) on loopback, and a fault-injecting proxy.

The backend is tested against a real server, not a mock, because what matters
is what servers actually do: conditional create, listing pages, error bodies.
`weed mini` runs master, volume, filer and S3 gateway in one process, starts in
about a second, and binds only 127.0.0.1 on ports chosen free here. Nothing is
left running: `stop()` waits for the process, and every socket and file lives
under the test's directory.

`FaultProxy` sits between a client and the S3 port and can answer requests
with errors, reset connections, refuse conditional writes, or run a hook (e.g.
kill the server) when a chosen request arrives.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import obstore
from obstore.store import S3Store

ACCESS_KEY = "cleancut-test"
SECRET_KEY = "cleancut-test-secret-key"
BUCKET = "cleancut"
REGION = "us-east-1"
WEED = Path(sys.executable).with_name("weed")

# Every listening port `weed mini` opens, so none falls back to a fixed default.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (held open together so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def s3_env(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict:
    """The AWS_* variables a cleancut process needs to reach `endpoint` (nothing inherited)."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }


def clean_environ() -> dict[str, str]:
    """os.environ without any AWS_* setting of the machine running the tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


@dataclass
class Server:
    dir: Path
    ports: dict[str, int]
    buckets: tuple[str, ...] = (BUCKET,)
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "weed.log"

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return s3_env(self.endpoint)

    def store(self, bucket: str = BUCKET) -> S3Store:
        """A client for setup and inspection (no retries: tests want to see failures)."""
        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region=REGION,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "connect_timeout": "2s", "timeout": "30s"},
            retry_config={"max_retries": 0},
        )

    def start(self, timeout: float = 30) -> None:
        config = self.dir / "s3.json"
        identity = {
            "name": "cleancut",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        (self.dir / "data").mkdir(exist_ok=True)
        args = [
            str(WEED),
            "mini",
            f"-dir={self.dir / 'data'}",
            f"-admin.dataDir={self.dir / 'admin'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            f"-bucket={','.join(self.buckets)}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error
            "-master.volumeSizeLimitMB=64",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a signed PUT into every bucket succeeds, not just an open port."""
        deadline = time.monotonic() + timeout
        pending = list(self.buckets)
        while pending:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited {self.proc.returncode}: {self._tail()}")
            try:
                obstore.put(self.store(pending[0]), ".ready", b"1")
                pending.pop(0)
                continue
            except Exception:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"weed mini not ready in {timeout}s: {self._tail()}"
                    ) from None
            time.sleep(0.1)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down gracefully (as an operator's restart would), killing after 10 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self._remove_sockets()

    def kill(self) -> None:
        """kill -9: the server vanishes mid-request, as in a crash or a power cut."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed puts its gRPC sockets in /tmp whatever the flags; a killed one leaves them."""
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same directory and ports (what survived is what was durable)."""
        self.kill()
        self.start(timeout)


def start_seaweed(tmp_dir: Path, buckets: tuple[str, ...] = (BUCKET,)) -> Server:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    server = Server(tmp_dir, ports, buckets)
    server.start()
    return server


# --- the fault proxy ---------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that forwards to an S3 port, and fails on command.

    Faults are consumed in order: connection resets, error answers, lost answers
    (the request reaches the server, the connection drops before the answer: the
    client cannot know whether it took effect). Everything is counted in
    `requests` (method, path), faults included.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.resets = 0
        self.failures = 0
        self.lost = 0
        self.failure_status = 503
        self.failure_code = "SlowDown"
        self.reject_conditional = False  # answer If-None-Match PUTs with 501 NotImplemented
        self.answer_delay = 0.0  # seconds to hold every answer back (a hung server)
        self.body_rate = 0  # bytes/s at which request bodies are read (0: at once)
        self.on_request: Callable[[str, str], None] | None = None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int = 503, code: str = "SlowDown") -> None:
        with self.lock:
            self.failures, self.failure_status, self.failure_code = count, status, code

    def reset_next(self, count: int) -> None:
        with self.lock:
            self.resets = count

    def lose_next_response(self, count: int) -> None:
        with self.lock:
            self.lost = count

    def reset(self) -> None:
        """Forget counts and faults (between tests sharing one proxy)."""
        with self.lock:
            self.requests.clear()
            self.resets = self.failures = self.lost = 0
            self.reject_conditional = False
            self.answer_delay = 0.0
            self.body_rate = 0
            self.on_request = None

    def count(self, method: str, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _fault(self, method: str, headers: http.client.HTTPMessage) -> tuple[str, int, str]:
        """What to do with this request: ("forward"|"reset"|"fail"|"lose", status, code)."""
        with self.lock:
            if self.resets > 0:
                self.resets -= 1
                return "reset", 0, ""
            if self.failures > 0:
                self.failures -= 1
                return "fail", self.failure_status, self.failure_code
            if self.lost > 0:
                self.lost -= 1
                return "lose", 0, ""
            if self.reject_conditional and method == "PUT" and "If-None-Match" in headers:
                return "fail", 501, "NotImplemented"
        return "forward", 0, ""


def _make_handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream: http.client.HTTPConnection | None = None

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if not proxy.body_rate:
                return self.rfile.read(length) if length else b""
            parts, step = [], max(1, proxy.body_rate // 20)  # a slow uplink: 20 sips a second
            while length > 0:
                parts.append(self.rfile.read(min(step, length)))
                length -= len(parts[-1])
                time.sleep(0.05)
            return b"".join(parts)

        def _handle(self) -> None:
            body = self._body()
            method = self.command
            with proxy.lock:
                proxy.requests.append((method, self.path))
            hook = proxy.on_request
            if hook is not None:
                hook(method, self.path)
            action, status, code = proxy._fault(method, self.headers)
            if proxy.answer_delay:
                time.sleep(proxy.answer_delay)
            if action == "reset":
                self._reset()
            elif action == "fail":
                self._answer_error(status, code)
            else:
                self._forward(method, body, lose=action == "lose")

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

        def _reset(self) -> None:
            """Close with RST, as a crashed server or a middlebox would."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _answer_error(self, status: int, code: str) -> None:
            payload = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
                f"<Resource>{self.path}</Resource></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _forward(self, method: str, body: bytes, lose: bool = False) -> None:
            try:
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection(
                        "127.0.0.1", proxy.upstream_port, timeout=60
                    )
                self.upstream.putrequest(
                    method, self.path, skip_host=True, skip_accept_encoding=True
                )
                for key, value in self.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.upstream.putheader(key, value)
                self.upstream.endheaders(body or None)
                resp = self.upstream.getresponse()
                data = resp.read()
            except OSError:
                # The server is gone: the client sees its connection drop, as without a proxy.
                if self.upstream is not None:
                    self.upstream.close()
                    self.upstream = None
                self._reset()
                return
            if lose:
                self._reset()
                return
            self.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            length = resp.getheader("Content-Length") if method == "HEAD" else str(len(data))
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()
            if self.upstream is not None:
                self.upstream.close()

    return Handler
