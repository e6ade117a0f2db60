"""A restore drill for OpenClaw: boot a sandboxed gateway on a restored state, run one turn.

Meant as `cleancut restore-test --smoke`: it proves the agent comes back, not only its
files. Given a restored directory (an OpenClaw state dir, or a directory holding one as
`state/`), it

1. re-runs itself in new network and PID namespaces (`unshare`, root): the gateway sees
   only loopback, cannot reach the operator's model provider or channels, and the live
   gateway on the same host (which the copy names as its databases' holder) is not
   visible to it;
2. starts a stand-in model on loopback, an OpenAI-compatible echo that costs no tokens;
3. writes a drill config (token auth, loopback, its own port, no update checks,
   discovery, channels or catalog refresh; the restored workspace; the stand-in model)
   outside the restored tree, and starts `openclaw gateway run` on the restored state;
4. waits for `/readyz`, sends one turn (to `--session-key`, a restored session, or a
   drill session) and checks that the turn was answered and written to the restored
   agent database's transcript.

Exit 0 when all of that holds; otherwise one line on stderr and exit 1.

    python -m cleancut.hot.openclaw_drill DIR [--openclaw CMD] [--session-key KEY]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

INSIDE_ENV = "CLEANCUT_OPENCLAW_DRILL_INSIDE"
PORT = 18789
INTERNAL_MARK = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
QUIET = {"OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_AUTO_UPDATE": "1",
         "OPENCLAW_NO_RESPAWN": "1", "OPENCLAW_SKIP_CHANNELS": "1", "OPENCLAW_OFFLINE": "1"}


class DrillFailed(Exception):
    """The drill did not prove the gateway comes back; the message says where it stopped."""


def _said(messages: list[dict[str, Any]]) -> list[str]:
    """The users' texts in a request, without the gateway's own context blocks."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = str(content or "").strip()
        if m.get("role") == "user" and text and not text.startswith(INTERNAL_MARK):
            first = text.splitlines()[0]
            out.append(first.split("] ", 1)[1] if first.startswith("[") and "] " in first
                       else first)
    return out


class EchoModel(BaseHTTPRequestHandler):
    """`drill reply <n>: <text>`, n the user turns the gateway sent (its history)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        models = {"object": "list", "data": [{"id": "echo", "object": "model", "created": 0,
                                              "owned_by": "cleancut-drill"}]}
        self._send(200, json.dumps(models).encode(), "application/json")

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        said = _said(req.get("messages") or [])
        text = f"drill reply {len(said)}: {said[-1][:200] if said else ''}"
        base = {"id": "drill", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": "echo"}
        if not req.get("stream"):
            body = base | {"object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text}}]}
            self._send(200, json.dumps(body).encode(), "application/json")
            return
        events = [
            base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                 "finish_reason": None}]},
            base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            base | {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                             "total_tokens": 2}},
        ]
        stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, stream.encode(), "text/event-stream")


def state_dir(restored: Path) -> Path:
    for candidate in (restored, restored / "state"):
        if (candidate / "agents").is_dir() or (candidate / "state" / "openclaw.sqlite").is_file():
            return candidate
    raise DrillFailed(f"no OpenClaw state dir in {restored} (no agents/ or state/openclaw.sqlite)")


def drill_config(state: Path, workspace: Path, scratch: Path, token: str,
                 model_port: int) -> dict[str, Any]:
    return {
        "gateway": {"mode": "local", "bind": "loopback", "port": PORT,
                    "auth": {"mode": "token", "token": token},
                    "http": {"endpoints": {"chatCompletions": {"enabled": True}}}},
        "update": {"checkOnStart": False},
        "discovery": {"mdns": {"mode": "off"}},
        "logging": {"file": str(scratch / "openclaw.log")},
        "agents": {"defaults": {"workspace": str(workspace),
                                "model": {"primary": "drill/echo"}}},
        "models": {"mode": "merge", "catalogRefresh": {"enabled": False}, "providers": {
            "drill": {"baseUrl": f"http://127.0.0.1:{model_port}/v1", "apiKey": "drill-local",
                      "api": "openai-completions",
                      "models": [{"id": "echo", "name": "Drill echo", "reasoning": False,
                                  "input": ["text"], "contextWindow": 128000, "maxTokens": 4096,
                                  "cost": {"input": 0, "output": 0, "cacheRead": 0,
                                           "cacheWrite": 0}}]}}},
    }


def _http(url: str, token: str, body: dict[str, Any] | None, headers: dict[str, str],
          timeout: float) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        | headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def transcript_events(state: Path) -> int:
    total = 0
    for db in state.glob("agents/*/agent/openclaw-agent.sqlite"):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            total += con.execute("SELECT count(*) FROM transcript_events").fetchone()[0]
        finally:
            con.close()
    return total


def drill(restored: Path, openclaw: list[str], session_key: str | None, timeout: float) -> str:
    """Inside the namespaces: boot, one turn, check. Returns the line to print."""
    deadline = time.monotonic() + timeout
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    state = state_dir(restored)
    workspace = next((p for p in (state / "workspace", restored / "workspace") if p.is_dir()),
                     state / "workspace")
    scratch = Path(tempfile.mkdtemp(prefix="cleancut-openclaw-drill-"))
    model = ThreadingHTTPServer(("127.0.0.1", 0), EchoModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    token = secrets.token_urlsafe(24)
    config = scratch / "openclaw.json"
    config.write_text(json.dumps(drill_config(state, workspace, scratch, token,
                                              model.server_address[1])))
    (scratch / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")} | QUIET | {
        "HOME": str(scratch / "home"), "OPENCLAW_STATE_DIR": str(state),
        "OPENCLAW_CONFIG_PATH": str(config)}
    before = transcript_events(state)
    with open(scratch / "gateway.out", "wb") as log:
        gateway = subprocess.Popen([*openclaw, "gateway", "run"], env=env, stdout=log,
                                   stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        started = time.monotonic()
        _wait_ready(gateway, token, deadline, scratch)
        ready_s = time.monotonic() - started
        headers = {"x-openclaw-session-key": session_key} if session_key else {}
        status, body = _http(f"http://127.0.0.1:{PORT}/v1/chat/completions", token,
                             {"model": "openclaw", "user": "cleancut-drill",
                              "messages": [{"role": "user", "content": "cleancut restore drill"}]},
                             headers, max(1.0, deadline - time.monotonic()))
        reply = str(((body.get("choices") or [{}])[0].get("message") or {}).get("content", ""))
        if status != 200 or not reply.startswith("drill reply "):
            raise DrillFailed(f"the turn was not answered (HTTP {status})")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gateway.pid, signal.SIGTERM)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
            gateway.wait()
        model.shutdown()
    after = transcript_events(state)
    if after <= before:
        raise DrillFailed("the turn was answered but not written to the restored transcript")
    history = reply.split(":", 1)[0].removeprefix("drill reply ")
    return (f"openclaw drill: gateway ready in {ready_s:.1f}s on the restored state; one turn "
            f"answered with {history} user turn(s) of history; transcript {before} -> {after} "
            "events")


def _wait_ready(gateway: subprocess.Popen[bytes], token: str, deadline: float,
                scratch: Path) -> None:
    while time.monotonic() < deadline:
        if gateway.poll() is not None:
            tail = (scratch / "gateway.out").read_text(errors="replace").strip().splitlines()
            last = tail[-1] if tail else ""
            raise DrillFailed(f"the gateway exited {gateway.returncode}: {last[:300]}")
        with contextlib.suppress(OSError):
            status, body = _http(f"http://127.0.0.1:{PORT}/readyz", token, None, {}, 5)
            if status == 200 and body.get("ready"):
                return
        time.sleep(0.5)
    raise DrillFailed("the gateway did not become ready in time")


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="cleancut-openclaw-drill", description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="the restored directory ($CLEANCUT_RESTORE_DIR)")
    ap.add_argument("--openclaw", default="openclaw",
                    help="how to run OpenClaw's CLI (default: openclaw on PATH)")
    ap.add_argument("--session-key", help="a restored session to continue (default: a new one)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds, all steps together")
    args = ap.parse_args(args_list)
    if os.environ.get(INSIDE_ENV) != "1":
        cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", sys.executable, "-m",
               "cleancut.hot.openclaw_drill", *args_list]
        try:
            return subprocess.run(cmd, env=os.environ | {INSIDE_ENV: "1"}).returncode
        except OSError as exc:
            print(f"openclaw drill: cannot make its namespaces (unshare, root): {exc}",
                  file=sys.stderr)
            return 1
    try:
        print(drill(args.dir.absolute(), shlex.split(args.openclaw), args.session_key,
                    args.timeout))
    except (DrillFailed, OSError, sqlite3.Error, subprocess.CalledProcessError) as exc:
        print(f"openclaw drill: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
