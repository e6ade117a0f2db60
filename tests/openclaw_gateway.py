"""Test equipment: a real OpenClaw gateway and its fake model, inside a loopback-only netns.

- `runtime()` runs scripts/openclaw-runtime (Node 24 and a pinned openclaw from the npm
  registry, cached outside the repository) and returns its dir.
- `NetNamespace` makes a network namespace that has only `lo`, and moves the calling
  thread into it until it exits: every process and thread the test starts meanwhile
  (the fake model, the gateway, cleancut, load clients) lives there and can reach
  nothing but loopback.
- `Gateway` writes a quiet, local gateway config (token auth, loopback, no update
  checks, discovery, channels or catalog refresh, logs inside the state dir), starts
  the fake model and `openclaw gateway run`, and waits for `/readyz`. A gateway can be
  started on any dir laid out like one, such as a restored copy: its config is written
  anew, pointing at that dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

REPO = Path(__file__).resolve().parents[1]
RUNTIME_SCRIPT = REPO / "scripts" / "openclaw-runtime"
FAKE_MODEL = Path(__file__).resolve().parent / "openclaw_fake_model.py"
TOKEN = "cleancut-test-gateway-token"
CLONE_NEWNET = 0x40000000
READY_LIMIT_S = 240.0
STOP_GRACE_S = 20.0


def runtime() -> Path:
    """The cached Node 24 + openclaw install, made on first use."""
    proc = subprocess.run([str(RUNTIME_SCRIPT)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/openclaw-runtime failed: {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetNamespace:
    """A network namespace with only loopback, entered by the calling thread."""

    _count = 0

    def __init__(self) -> None:
        NetNamespace._count += 1
        self.name = f"cleancut-oc-{os.getpid()}-{NetNamespace._count}"
        self._home: int | None = None

    def __enter__(self) -> NetNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._home is not None:
            _setns(self._home)
            os.close(self._home)
            self._home = None
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    @staticmethod
    def links() -> list[str]:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
        return [line.split(":")[1].strip() for line in out.stdout.splitlines()]


def config(root: Path, port: int, model_port: int,
           telegram_api: str | None = None) -> dict[str, Any]:
    """A gateway config for a state dir at root/state and a workspace at root/workspace;
    with `telegram_api`, a Telegram channel whose Bot API is that loopback server
    (tests/openclaw_fake_telegram.py), its token in root/telegram.token."""
    channels: dict[str, Any] = {}
    if telegram_api is not None:
        channels = {"telegram": {"enabled": True, "apiRoot": telegram_api,
                                 "tokenFile": str(root / "telegram.token"),
                                 "dmPolicy": "open", "allowFrom": ["*"]}}
    return {
        **({"channels": channels} if channels else {}),
        "gateway": {
            "mode": "local", "bind": "loopback", "port": port,
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "update": {"checkOnStart": False},
        "discovery": {"mdns": {"mode": "off"}},
        "logging": {"file": str(root / "state" / "logs" / "openclaw.log")},
        "agents": {"defaults": {
            "workspace": str(root / "workspace"),
            "model": {"primary": "fake/fake-model"},
        }},
        "models": {
            "mode": "merge",
            "catalogRefresh": {"enabled": False},
            "providers": {"fake": {
                "baseUrl": f"http://127.0.0.1:{model_port}/v1", "apiKey": "fake-local",
                "api": "openai-completions",
                "models": [{
                    "id": "fake-model", "name": "Fake", "reasoning": False, "input": ["text"],
                    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                    "contextWindow": 128000, "maxTokens": 4096,
                }],
            }},
        },
    }


def http(method: str, url: str, body: dict[str, Any] | None = None,
         timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(raw or b"{}")
        return exc.code, {"raw": raw.decode(errors="replace")}


@dataclass
class Gateway:
    runtime: Path
    root: Path  # holds state/, workspace/, home/, openclaw.json
    port: int = 18789
    model_port: int = 18080
    telegram_api: str | None = None  # a Telegram channel on this loopback Bot API
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    start_s: float | None = None

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def config_path(self) -> Path:
        return self.root / "openclaw.json"

    @property
    def address(self) -> str:
        return f"openclaw://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("OPENCLAW_", "NODE_", "npm_"))}
        return keep | {
            "PATH": f"{self.runtime / 'node' / 'bin'}:{keep.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "OPENCLAW_STATE_DIR": str(self.state),
            "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_AUTO_UPDATE": "1",
            "OPENCLAW_NO_RESPAWN": "1", "OPENCLAW_OFFLINE": "1",
        } | ({} if self.telegram_api else {"OPENCLAW_SKIP_CHANNELS": "1"})

    def openclaw(self, *args: str) -> list[str]:
        node = self.runtime / "node" / "bin" / "node"
        return [str(node), str(self.runtime / "node_modules" / "openclaw" / "openclaw.mjs"),
                *args]

    def start(self, with_model: bool = True) -> None:
        for sub in ("state", "workspace", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if self.telegram_api:
            (self.root / "telegram.token").write_text("4242:cleancut-test-token\n")
        self.config_path.write_text(json.dumps(
            config(self.root, self.port, self.model_port, self.telegram_api), indent=2))
        log = open(self.root / "gateway.out", "ab")  # noqa: SIM115 - kept by the child
        if with_model:
            self.procs.append(subprocess.Popen(
                [sys.executable, str(FAKE_MODEL), str(self.model_port)],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True))
        began = time.monotonic()
        self.procs.append(subprocess.Popen(
            self.openclaw("gateway", "run"), env=self.env(), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root))
        log.close()
        self._wait_ready(began)
        self.start_s = time.monotonic() - began

    def _wait_ready(self, began: float) -> None:
        gateway = self.procs[-1]
        while time.monotonic() - began < READY_LIMIT_S:
            if gateway.poll() is not None:
                raise RuntimeError(f"gateway exited {gateway.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                status, body = http("GET", f"http://127.0.0.1:{self.port}/readyz", timeout=5)
                if status == 200 and body.get("ready"):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"gateway not ready after {READY_LIMIT_S} s: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "gateway.out").read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it spawned and left
        self.procs.clear()

    def chat(self, user: str, text: str, timeout: float = 120.0) -> tuple[int, dict[str, Any]]:
        """One turn through the OpenAI-compatible endpoint; `user` keys the session."""
        body = {"model": "openclaw", "user": user,
                "messages": [{"role": "user", "content": text}]}
        return http("POST", f"http://127.0.0.1:{self.port}/v1/chat/completions", body, timeout)

    def release_model(self) -> None:
        """Let every hung reply of the fake model finish."""
        http("POST", f"http://127.0.0.1:{self.model_port}/control/release", {})


def reply_text(body: dict[str, Any]) -> str:
    return str(((body.get("choices") or [{}])[0].get("message") or {}).get("content", ""))


def databases(state: Path) -> list[Path]:
    """Every SQLite database file under a state dir (by header, not by name)."""
    found = []
    for path in sorted(state.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(16) == b"SQLite format 3\x00":
                    found.append(path)
    return found


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    event_json, event_zstd, size = row
    if event_json is not None:
        return json.loads(event_json)
    return json.loads(zstandard.ZstdDecompressor().decompress(event_zstd, max_output_size=size))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def transcripts(db: Path) -> dict[str, list[tuple[str, str]]]:
    """Per session id, its transcript's messages in order: (role, text)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT session_id, event_json, event_zstd, event_utf8_bytes"
                           " FROM transcript_events ORDER BY session_id, seq").fetchall()
    finally:
        con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for session, *event_row in rows:
        event = _event(tuple(event_row))
        message = event.get("message") if event.get("type") == "message" else None
        if isinstance(message, dict) and message.get("role") in ("user", "assistant"):
            out.setdefault(session, []).append((message["role"], _text(message.get("content"))))
    return out


def unanswered(state: Path) -> list[str]:
    """Sessions whose transcript ends in a user message without its reply."""
    found = []
    for db in sorted(state.glob("agents/*/agent/openclaw-agent.sqlite")):
        for session, messages in transcripts(db).items():
            if messages and messages[-1][0] == "user":
                found.append(f"{db.parent.parent.name}/{session}")
    return found


INTEGRITY_JS = """
const { DatabaseSync } = require("node:sqlite");
const out = {};
for (const path of process.argv.slice(1)) {
  const db = new DatabaseSync(path, { readOnly: true });
  out[path] = db.prepare("PRAGMA integrity_check").all().map((r) => r.integrity_check);
  db.close();
}
console.log(JSON.stringify(out));
"""


def integrity(runtime: Path, paths: list[Path]) -> dict[str, list[str]]:
    """PRAGMA integrity_check on each database with Node 24's SQLite (new enough for them)."""
    node = runtime / "node" / "bin" / "node"
    proc = subprocess.run([str(node), "-e", INTEGRITY_JS, *map(str, paths)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"integrity check could not run: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
