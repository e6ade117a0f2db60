"""A client for a running OpenClaw gateway's control plane: its cooperative host suspension.

OpenClaw (npm package `openclaw`) takes control calls over its WebSocket RPC: JSON text
frames, a `connect.challenge` event first, then a `connect` request that carries the
shared gateway token, then `{type:"req", id, method, params}` requests answered by
`{type:"res", id, ok, payload|error}` (events may come in between and are skipped).

The suspension handshake, from its docs (gateway/external-apps.md):

- `gateway.suspend.prepare {requestId, drain: true}` closes admission and drains the
  work already admitted; it answers `ready` (with a `suspensionId` and `expiresAtMs`),
  `draining` (same, and blockers) or `busy`.
- `gateway.suspend.status {suspensionId}` is polled until `ready`.
- Calling prepare again with the same `requestId` renews the 120 s lease.
- `gateway.suspend.resume {suspensionId}` reopens admission. If every control path is
  lost, the lease expiry reopens it by itself: a cleancut killed mid-capture leaves a
  gateway that serves again within its lease.

Every call here takes an absolute deadline (a `time.monotonic()` value): no reply, event
or `retryAfterMs` of the gateway can make a call wait past it.

The token never travels on the command line: it comes from `OPENCLAW_GATEWAY_TOKEN`, a
token file, or the gateway's own config file (`gateway.auth.token`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.sync.client import ClientConnection, connect

from cleancut.errors import AgentMisbehaved, AgentUnreachable, QuiesceMissed, UsageError
from cleancut.fsio.boundedread import CONFIG_LIMIT, SECRET_LIMIT, read_bounded

from .runtime import AgentRuntime, LeaseLost, RuntimeContext

SCHEME = "openclaw://"
PROTOCOL = 4
TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
CONFIG_ENV = "OPENCLAW_CONFIG_PATH"
DEFAULT_CONFIG = Path("~/.openclaw/openclaw.json")
# The docs' trusted local backend client: may connect without a device identity on
# loopback when it proves the shared gateway token.
CLIENT = {"id": "gateway-client", "version": "1", "platform": "linux", "mode": "backend"}
SCOPES = ["operator.admin", "operator.read"]
# Polling between status calls when the gateway gives no retryAfterMs, and the most we
# ever wait between two polls whatever it says (its hint is for long drains; every
# moment waited here is a moment the gateway refuses its users).
POLL_S = 0.05
MAX_POLL_S = 0.1
BUSY_RETRY_S = 2.0
# Renewals are prepares, and the gateway takes at most 30 prepares a minute; its lease is
# 120 s. Renewing every third of cleancut's lease, within these bounds, keeps it held.
MIN_RENEW_S = 2.5
MAX_RENEW_S = 40.0


class GatewayRefused(AgentMisbehaved):
    """The gateway answered a call with an error frame."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = str(error.get("code", ""))
        self.details = error.get("details") or {}
        super().__init__(
            f"openclaw gateway refused {method}: {self.code} {error.get('message', '')}".strip()
        )


def parse_address(agent: str) -> tuple[str, int]:
    """`openclaw://HOST:PORT` -> (host, port)."""
    if not agent.startswith(SCHEME):
        raise UsageError(f"not an openclaw agent address (want {SCHEME}HOST:PORT): {agent}")
    rest = agent[len(SCHEME):].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"openclaw agent address needs HOST:PORT: {agent}")
    return host.strip("[]"), int(port)


def read_config(path: Path) -> dict[str, Any]:
    """The gateway's config file (JSON5), as a dict."""
    raw = read_bounded(path, "openclaw config", CONFIG_LIMIT)  # regular, bounded, non-blocking
    try:
        data = json5.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"openclaw config {path} is not valid JSON5: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"openclaw config {path} does not hold an object")
    return data


def config_path(env: Mapping[str, str] | None = None) -> Path:
    source = os.environ if env is None else env
    return Path(source.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


def resolve_token(
    token_file: Path | None = None,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The gateway token: a token file if given, else $OPENCLAW_GATEWAY_TOKEN, else the config."""
    source = os.environ if env is None else env
    if token_file is not None:
        raw = read_bounded(token_file, "agent token file", SECRET_LIMIT)
        token = raw.decode("utf-8", "replace").strip()
        if not token:
            raise UsageError(f"agent token file {token_file} is empty")
        return token
    if source.get(TOKEN_ENV, "").strip():
        return source[TOKEN_ENV].strip()
    path = config or config_path(source)
    if not path.exists():
        raise UsageError(
            f"no openclaw gateway token: set {TOKEN_ENV}, pass --agent-token-file, "
            f"or point {CONFIG_ENV} at the gateway's config"
        )
    auth = (read_config(path).get("gateway") or {}).get("auth") or {}
    found = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(found, str) or not found.strip():
        raise UsageError(f"openclaw config {path} holds no plain gateway.auth.token")
    return found.strip()


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


@dataclass
class Suspension:
    """A suspension lease this client holds."""

    request_id: str
    suspension_id: str | None = None
    status: str = "none"  # ready | draining | busy | running | none
    expires_at_ms: int | None = None
    blockers: list[dict[str, Any]] = field(default_factory=list)
    write_custody: list[dict[str, Any]] = field(default_factory=list)
    ready_at: float | None = None  # monotonic time the gateway first reported ready


class GatewayClient:
    """One authenticated WebSocket connection to an OpenClaw gateway."""

    def __init__(self, host: str, port: int, token: str, deadline: float) -> None:
        self.address = f"{host}:{port}"
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = {}
        url = f"ws://{'[' + host + ']' if ':' in host else host}:{port}/"
        try:
            self._ws: ClientConnection = connect(
                url, open_timeout=max(0.01, _remaining(deadline)), proxy=None,
                compression=None, max_size=None, max_queue=None,
                user_agent_header="cleancut", legacy=True,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise AgentUnreachable(
                f"openclaw gateway at {self.address} did not answer: {exc}"
            ) from exc
        try:
            self._handshake(token, deadline)
        except BaseException:
            self.close()
            raise

    def _handshake(self, token: str, deadline: float) -> None:
        try:
            self._connect(token, deadline)
        except (TimeoutError, QuiesceMissed) as exc:
            raise AgentUnreachable(
                f"openclaw gateway at {self.address} did not complete its handshake in time"
            ) from exc

    def _connect(self, token: str, deadline: float) -> None:
        first = self._recv(deadline, "connect.challenge")
        if first.get("type") != "event" or first.get("event") != "connect.challenge":
            raise AgentMisbehaved(
                f"openclaw gateway at {self.address} did not start with connect.challenge"
            )
        params = {
            "minProtocol": PROTOCOL, "maxProtocol": PROTOCOL, "client": CLIENT,
            "role": "operator", "scopes": SCOPES, "caps": [], "auth": {"token": token},
        }
        try:
            hello = self.call("connect", params, deadline)
        except GatewayRefused as exc:
            raise AgentUnreachable(
                f"openclaw gateway at {self.address} refused the connection: {exc.code} "
                f"(check the gateway token)"
            ) from exc
        granted = set((hello.get("auth") or {}).get("scopes") or [])
        if not set(SCOPES) <= granted:
            raise AgentUnreachable(
                f"openclaw gateway at {self.address} granted {sorted(granted)}, "
                f"not {SCOPES}: use the gateway's shared token"
            )
        self.hello = hello

    def _recv(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        left = _remaining(deadline)
        if left <= 0:
            raise TimeoutError(waiting_for)
        try:
            raw = self._ws.recv(timeout=left)
        except TimeoutError:
            raise
        except WebSocketException as exc:
            raise AgentUnreachable(
                f"openclaw gateway at {self.address} closed the connection "
                f"(waiting for {waiting_for}): {exc}"
            ) from exc
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise AgentMisbehaved(
                f"openclaw gateway at {self.address} sent a frame that is not JSON"
            ) from exc
        if not isinstance(frame, dict):
            raise AgentMisbehaved(f"openclaw gateway at {self.address} sent a non-object frame")
        return frame

    def call(self, method: str, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request and wait, until the deadline at most, for its response."""
        rid = str(uuid.uuid4())
        with self._lock:
            try:
                self._ws.send(json.dumps({"type": "req", "id": rid, "method": method,
                                          "params": params}))
            except WebSocketException as exc:
                raise AgentUnreachable(
                    f"openclaw gateway at {self.address} closed the connection: {exc}"
                ) from exc
            while True:
                try:
                    frame = self._recv(deadline, method)
                except TimeoutError as exc:
                    raise QuiesceMissed(
                        f"openclaw gateway at {self.address} did not answer {method} in time"
                    ) from exc
                if frame.get("type") == "res" and frame.get("id") == rid:
                    break
        if not frame.get("ok"):
            raise GatewayRefused(method, frame.get("error") or {})
        payload = frame.get("payload")
        if not isinstance(payload, dict):
            raise AgentMisbehaved(f"openclaw gateway answered {method} without a payload object")
        return payload

    def close(self) -> None:
        # A short close: the gateway needs no goodbye, and a dead one must not hold us.
        self._ws.close_timeout = 1
        self._ws.close()


class OpenClawSuspender:
    """Suspends one gateway, keeps its lease, and resumes it."""

    def __init__(self, client: GatewayClient, request_id: str | None = None) -> None:
        self.client = client
        self.lease = Suspension(request_id or f"cleancut-{uuid.uuid4()}")

    def _prepare(self, deadline: float) -> dict[str, Any]:
        params = {"requestId": self.lease.request_id, "terminalPolicy": "preserve",
                  "drain": True}
        return self.client.call("gateway.suspend.prepare", params, deadline)

    def _note(self, payload: dict[str, Any]) -> None:
        self.lease.status = str(payload.get("status", ""))
        if payload.get("suspensionId"):
            self.lease.suspension_id = str(payload["suspensionId"])
        if isinstance(payload.get("expiresAtMs"), int):
            self.lease.expires_at_ms = payload["expiresAtMs"]
        self.lease.blockers = list(payload.get("blockers") or [])
        self.lease.write_custody = list(payload.get("writeCustody") or [])
        if self.lease.status == "ready" and self.lease.ready_at is None:
            self.lease.ready_at = time.monotonic()

    def quiesce(self, deadline: float) -> Suspension:
        """Prepare with drain and poll status until ready, or raise QuiesceMissed.

        On a miss the lease may be held (draining): the caller resumes in its finally.
        """
        payload = self._prepare(deadline)
        prepared = time.monotonic()
        self._note(payload)
        while self.lease.status != "ready":
            if self.lease.status not in ("draining", "busy", "running"):
                raise AgentMisbehaved(
                    f"openclaw gateway answered suspension with status {self.lease.status!r}"
                )
            hint = payload.get("retryAfterMs")
            wait = min(MAX_POLL_S, hint / 1000) if isinstance(hint, int | float) else POLL_S
            if self.lease.status == "busy":
                # Busy means prepare again, and prepares are rate limited (30 a minute).
                wait = BUSY_RETRY_S
            if _remaining(deadline) <= wait:
                raise QuiesceMissed(self._missed())
            time.sleep(max(0.0, wait))
            # A long drain outlasts the 120 s lease: prepare again (the same requestId
            # renews it) as the renewer would, and at once if it lapsed ("running").
            stale = time.monotonic() - prepared >= MAX_RENEW_S
            if (self.lease.status in ("busy", "running") or self.lease.suspension_id is None
                    or stale):
                payload = self._prepare(deadline)
                prepared = time.monotonic()
            else:
                payload = self.client.call(
                    "gateway.suspend.status", {"suspensionId": self.lease.suspension_id}, deadline
                )
            self._note(payload)
        return self.lease

    def _missed(self) -> str:
        what = ", ".join(str(b.get("message") or b.get("kind")) for b in self.lease.blockers)
        return f"openclaw gateway did not become ready in time ({what or self.lease.status})"

    def renew(self, deadline: float) -> Suspension:
        """Renew the lease (prepare again, same requestId); QuiesceMissed if it was lost."""
        held = self.lease.suspension_id
        payload = self._prepare(deadline)
        if payload.get("status") != "ready" or payload.get("suspensionId") != held:
            self._note(payload)
            raise QuiesceMissed(
                f"openclaw suspension lease was lost (gateway now {payload.get('status')!r})"
            )
        self._note(payload)
        return self.lease

    def resume(self, deadline: float) -> bool:
        """Release the lease; True if this call reopened admission."""
        if self.lease.suspension_id is None:
            return False
        payload = self.client.call(
            "gateway.suspend.resume", {"suspensionId": self.lease.suspension_id}, deadline
        )
        self.lease.status = str(payload.get("status", "running"))
        return bool(payload.get("resumed"))


# --- the runtime the orchestrator uses (hot/runtime.py) ---------------------------------------

QUEUE_DB = "openclaw.sqlite"  # state/openclaw.sqlite holds delivery_queue_entries
# Written by a gateway while it is suspended and ready: databases (memory index, the
# lease row) copied through the backup API, their sidecars and temporary reindex files,
# and its logs. A change there after the capture is its normal life, not a broken promise.
_LIVE_DIRS = ("logs", "tmp")


def _rfc3339(ms: int | None) -> str:
    if not isinstance(ms, int):
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def queue_actions(db: Path) -> list[dict[str, Any]]:
    """The outbound deliveries not settled in one state database, as in-flight actions.

    A pending entry whose platform send started may have reached the outside world
    (`unknown`: reconcile by its id before resending); one not started is `intent`
    (safe to send once). Failed entries are settled and not listed.
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT queue_name, id, status, entry_kind, channel, session_key, "
            "platform_send_started_at, updated_at, retry_count FROM delivery_queue_entries "
            "WHERE status = 'pending' ORDER BY enqueued_at, id"
        ).fetchall()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()
    actions = []
    for queue, key, _status, kind, channel, session, started, updated, retries in rows:
        actions.append({
            "key": str(key), "queue": str(queue),
            "kind": f"openclaw.{kind or 'delivery'}" + (f".{channel}" if channel else ""),
            "state": "unknown" if started else "intent", "since": _rfc3339(updated),
            "session": session, "retries": retries,
        })
    return actions


def state_databases(root: Path) -> list[Path]:
    """The gateway state databases (state/openclaw.sqlite) under a state dir or its parent."""
    found = [p for p in (root / "state" / QUEUE_DB, root / "state" / "state" / QUEUE_DB)
             if p.is_file()]
    return found


class OpenClawRuntime(AgentRuntime):
    """An OpenClaw gateway as an agent runtime: quiesce is its drained suspension."""

    # The drain already waits for pending reply deliveries and runs: no horizon to poll.
    polls_horizon = False

    def __init__(self, address: str, context: RuntimeContext) -> None:
        self.host, self.port = parse_address(address)
        # Where the live state dir may be: the source, or each of its named directories.
        self.roots: list[Path] = [context.source] if context.source else list(context.dirs.values())
        self.token = resolve_token(context.token_file)
        self.client: GatewayClient | None = None
        self.suspender: OpenClawSuspender | None = None

    def _deadline(self, timeout: float) -> float:
        return time.monotonic() + timeout

    def connect(self, timeout: float) -> dict[str, Any]:
        self.client = GatewayClient(self.host, self.port, self.token, self._deadline(timeout))
        self.suspender = OpenClawSuspender(self.client)
        server = self.client.hello.get("server") or {}
        return {"agent": "openclaw", "protocol": self.client.hello.get("protocol"),
                "capabilities": ["suspend"], "version": server.get("version")}

    def peer_pid(self) -> int | None:
        return None

    def _held(self) -> OpenClawSuspender:
        if self.suspender is None:
            raise AgentUnreachable("openclaw gateway: not connected")
        return self.suspender

    def quiesce(self, timeout: float, lease: float) -> None:
        try:
            self._held().quiesce(self._deadline(timeout))
        except QuiesceMissed as exc:
            raise QuiesceMissed(f"quiesce missed: {exc} (timeout {timeout:g}s)") from None

    def flush(self, timeout: float) -> dict[str, Any]:
        """Ready already means drained (final transcript writes included): check it holds."""
        suspender = self._held()
        assert self.client is not None
        payload = self.client.call("gateway.suspend.status",
                                   {"suspensionId": suspender.lease.suspension_id},
                                   self._deadline(timeout))
        if payload.get("status") != "ready":
            raise QuiesceMissed(
                f"quiesce missed: openclaw suspension is {payload.get('status')!r}, not ready"
            )
        return {}

    def inflight(self, timeout: float) -> list[dict[str, Any]]:
        return [a for root in self.roots for db in state_databases(root) for a in queue_actions(db)]

    def captured_inflight(self, tree: Path) -> list[dict[str, Any]]:
        return [a for db in state_databases(tree) for a in queue_actions(db)]

    def renew(self, timeout: float, lease: float) -> None:
        try:
            self._held().renew(self._deadline(timeout))
        except QuiesceMissed as exc:
            raise LeaseLost(str(exc), answered=True) from None
        except AgentUnreachable as exc:
            raise LeaseLost(str(exc), answered=False) from None

    def renew_every(self, lease: float) -> float:
        return min(max(lease / 3, MIN_RENEW_S), MAX_RENEW_S)

    def resume(self, timeout: float) -> None:
        self._held().resume(self._deadline(timeout))

    def expected_change(self, rel: str, staged: Path) -> bool:
        parts = rel.split("/")
        return ".sqlite" in parts[-1] or any(p in _LIVE_DIRS for p in parts[:-1])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
