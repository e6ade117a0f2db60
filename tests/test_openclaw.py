"""cleancut's OpenClaw client against a real OpenClaw gateway (pinned, from the npm registry).

One gateway for the module, started inside a network namespace that has only loopback,
with a fake OpenAI-compatible model beside it. These tests drive the gateway's
cooperative host suspension through src/cleancut/hot/openclaw.py, the client cleancut uses to
quiesce it: prepare with drain, status until ready, renewal, resume; turns refused
while suspended; a turn that never ends gives a miss; a cleancut killed with -9 while it
holds the lease leaves a gateway that serves again when the lease lapses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI
from openclaw_fake_telegram import FakeTelegram
from openclaw_gateway import TOKEN, Gateway, NetNamespace, http, reply_text, runtime

from cleancut.errors import AgentUnreachable, QuiesceMissed, UsageError
from cleancut.hot.openclaw import (
    GatewayClient,
    GatewayRefused,
    OpenClawSuspender,
    parse_address,
    queue_actions,
    resolve_token,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    rt = runtime()
    with NetNamespace():
        gw = Gateway(rt, tmp_path_factory.mktemp("openclaw"))
        try:
            gw.start()
            yield gw
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def channel_gateway(gateway: Gateway,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channelled]:
    """A second gateway, in the same namespace, whose Telegram channel talks to a stand-in
    Bot API on loopback: real outbound deliveries, held as long as the test wants."""
    telegram = FakeTelegram(gateway.port + 2).start()
    gw = Gateway(gateway.runtime, tmp_path_factory.mktemp("openclaw-channel"),
                 port=gateway.port + 1, model_port=gateway.model_port + 1,
                 telegram_api=telegram.api_root)
    try:
        gw.start()
        yield Channelled(gw, telegram)
    finally:
        telegram.release()
        gw.stop()
        telegram.stop()


@dataclass
class Channelled:
    gw: Gateway
    telegram: FakeTelegram


def _client(gw: Gateway, seconds: float = 30.0) -> GatewayClient:
    host, port = parse_address(gw.address)
    return GatewayClient(host, port, TOKEN, time.monotonic() + seconds)


def _model_state(gw: Gateway) -> dict[str, int]:
    return http("GET", f"http://127.0.0.1:{gw.model_port}/control/state")[1]


def test_gateway_lives_in_a_namespace_with_only_loopback(gateway: Gateway) -> None:
    assert NetNamespace.links() == ["lo"]
    status, body = gateway.chat("alice", "hello")
    assert status == 200, body
    assert reply_text(body) == "reply 1: hello"


def test_suspension_refuses_turns_until_resume(gateway: Gateway) -> None:
    client = _client(gateway)
    suspender = OpenClawSuspender(client)
    try:
        lease = suspender.quiesce(time.monotonic() + 30)
        assert lease.status == "ready" and lease.suspension_id
        status, body = gateway.chat("bob", "while suspended", timeout=30)
        assert status == 503, body
        assert body["error"]["code"] == "gateway_unavailable"
        status = client.call("gateway.suspend.status", {"suspensionId": lease.suspension_id},
                             time.monotonic() + 10)
        assert status["status"] == "ready"
    finally:
        assert suspender.resume(time.monotonic() + 10) is True
        client.close()
    status, body = gateway.chat("bob", "after resume")
    assert status == 200, body
    assert reply_text(body) == "reply 1: after resume"


def test_renewal_keeps_the_same_lease(gateway: Gateway) -> None:
    client = _client(gateway)
    suspender = OpenClawSuspender(client)
    try:
        first = suspender.quiesce(time.monotonic() + 30)
        sid, expires = first.suspension_id, first.expires_at_ms
        renewed = suspender.renew(time.monotonic() + 10)
        assert renewed.suspension_id == sid
        assert renewed.expires_at_ms is not None and expires is not None
        assert renewed.expires_at_ms >= expires
    finally:
        suspender.resume(time.monotonic() + 10)
        client.close()
    # Once resumed, a renewal cannot silently take a new lease for the old one.
    client = _client(gateway)
    try:
        again = OpenClawSuspender(client, suspender.lease.request_id)
        again.lease.suspension_id = sid
        with pytest.raises(QuiesceMissed):
            again.renew(time.monotonic() + 10)
    finally:
        again.resume(time.monotonic() + 10)
        client.close()


def test_a_turn_that_never_ends_is_a_miss_and_the_gateway_keeps_serving(
    gateway: Gateway,
) -> None:
    replies: list[tuple[int, dict[str, object]]] = []
    hung = threading.Thread(target=lambda: replies.append(
        gateway.chat("carol", "HANG until released", timeout=300)))
    hung.start()
    deadline = time.monotonic() + 120
    while _model_state(gateway)["hung"] < 1:
        assert time.monotonic() < deadline, "the hung turn never reached the model"
        time.sleep(0.1)
    client = _client(gateway)
    suspender = OpenClawSuspender(client)
    try:
        began = time.monotonic()
        with pytest.raises(QuiesceMissed, match="did not become ready"):
            suspender.quiesce(began + 3.0)
        # The deadline is absolute: the drain does not stretch it.
        assert time.monotonic() - began < 3.0 + 1.0
        assert suspender.lease.status == "draining"
    finally:
        suspender.resume(time.monotonic() + 10)
        client.close()
    gateway.release_model()
    hung.join(120)
    assert replies and replies[0][0] == 200, replies
    status, body = gateway.chat("carol", "still there?")
    assert status == 200, body


def test_a_wrong_token_is_refused_in_one_line(gateway: Gateway) -> None:
    host, port = parse_address(gateway.address)
    with pytest.raises(AgentUnreachable, match="refused the connection") as err:
        GatewayClient(host, port, "not-the-token", time.monotonic() + 30)
    assert "\n" not in str(err.value)


def test_cleancut_backup_with_a_wrong_or_missing_token(repo_cli: CLI, gateway: Gateway) -> None:
    args = ("backup", str(gateway.state), "--agent", gateway.address)
    res = repo_cli.run(*args, env={"OPENCLAW_GATEWAY_TOKEN": "wrong"})
    assert res.code == 8, res.err
    assert res.err.startswith("cleancut: ") and res.err.count("\n") == 1
    assert "refused the connection" in res.err and "wrong" not in res.err
    res = repo_cli.run(*args, env={"OPENCLAW_CONFIG_PATH": str(gateway.root / "nothing.json")})
    assert res.code == 2 and "no openclaw gateway token" in res.err, res.err
    # The gateway is left as it was: serving.
    status, body = gateway.chat("frank", "no harm done?")
    assert status == 200, body


def test_nothing_listening_is_unreachable(gateway: Gateway) -> None:
    with pytest.raises(AgentUnreachable, match="did not answer"):
        GatewayClient("127.0.0.1", 1, TOKEN, time.monotonic() + 5)


def test_token_sources_never_argv(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    cfg = tmp_path / "openclaw.json"
    cfg.write_text('{ // JSON5, as OpenClaw writes it\n'
                   ' gateway: { auth: { token: "from-config" } },\n}')
    env = {"OPENCLAW_CONFIG_PATH": str(cfg)}
    assert resolve_token(token_file, env=env) == "from-file"
    assert resolve_token(env=env | {"OPENCLAW_GATEWAY_TOKEN": "from-env"}) == "from-env"
    assert resolve_token(env=env) == "from-config"
    with pytest.raises(UsageError, match="no openclaw gateway token"):
        resolve_token(env={"OPENCLAW_CONFIG_PATH": str(tmp_path / "missing.json")})
    token_file.write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        resolve_token(token_file, env=env)


def test_a_config_source_names_an_openclaw_agent(repo_cli: CLI, workspace: Path,
                                                 tmp_path: Path) -> None:
    config = tmp_path / "cleancut.toml"
    config.write_text(f'[sources.claw]\npath = "{workspace}"\nagent = "openclaw://127.0.0.1:1"\n')
    res = repo_cli.run("backup", "claw", "--config", str(config),
                       env={"OPENCLAW_GATEWAY_TOKEN": "t"})
    assert res.code == 8, res.err
    assert "openclaw gateway at 127.0.0.1:1 did not answer" in res.err


@pytest.mark.parametrize("bad", ["unix:/x", "openclaw://host", "openclaw://:80",
                                 "openclaw://h:0", "openclaw://h:99999"])
def test_bad_addresses_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_address(bad)


def test_a_delivery_being_sent_is_in_flight_in_the_snapshot_and_handed_over(
    repo_cli: CLI, channel_gateway: Channelled, tmp_path: Path
) -> None:
    """A real pending outbound delivery: the gateway sends a message through its Telegram
    channel, and the Bot API holds the send. The gateway drains and becomes ready with
    the delivery still pending in its queue (its send started, no receipt): the snapshot
    records it by its queue id as `unknown` (reconcile before resending), and restore
    hands it over beside the restored directory."""
    gw, telegram = channel_gateway.gw, channel_gateway.telegram

    def send() -> None:
        client = _client(gw, 300)
        # Answered once the Bot API answers, or refused once the gateway's own HTTP
        # timeout for the held request runs out: either way the send is over.
        with contextlib.suppress(GatewayRefused):
            client.call("send", {
                "to": "4242", "message": "the report is ready", "channel": "telegram",
                "idempotencyKey": "cleancut-inflight-1"}, time.monotonic() + 300)
        client.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert telegram.sending.wait(120), "the gateway never sent to the Bot API"
        live = gw.state / "state" / "openclaw.sqlite"
        (pending,) = [a for a in queue_actions(live) if a["kind"].endswith(".telegram")]
        assert pending["state"] == "unknown"  # the platform send has started
        res = repo_cli.run("backup", "--dir", f"state={gw.state}", "--dir",
                           f"workspace={gw.workspace}", "--name", "channelled",
                           "--agent", gw.address, "--json", "--exclude", "state/cache",
                           "--exclude", "state/tmp", "--exclude", "state/logs",
                           env={"OPENCLAW_GATEWAY_TOKEN": TOKEN})
        assert res.code == 0, res.err
        summary = res.json()
        assert summary["consistency"] == "quiesced"
        assert [(a["key"], a["state"]) for a in summary["inflight"]] == [
            (pending["key"], "unknown")]
        assert summary["inflight"][0]["kind"] == "openclaw.outbound-prepared-v1.telegram"
        target = tmp_path / "restored"
        back = repo_cli.ok("restore", str(summary["snapshot_id"]), "--target", str(target))
        assert f"in flight at capture: {pending['key']} (" in back.err
        handed = json.loads((tmp_path / "restored.inflight.json").read_text())
        assert [a["key"] for a in handed["inflight"]] == [pending["key"]]
        # The restored queue holds the same entry, pending, for the restored gateway.
        restored = target / "state" / "state" / "openclaw.sqlite"
        assert [a["key"] for a in queue_actions(restored)] == [pending["key"]]
    finally:
        telegram.release()
        sender.join(300)
    assert not sender.is_alive()


def _kill_while_draining(repo_cli: CLI, gateway: Gateway) -> float:
    """cleancut killed while it waits on the drain (a turn that has not ended)."""
    replies: list[tuple[int, dict[str, object]]] = []
    hung = threading.Thread(target=lambda: replies.append(
        gateway.chat("erin", "HANG while cleancut waits", timeout=300)))
    hung.start()
    _wait_hung(gateway)
    backup = subprocess.Popen(
        repo_cli.command("backup", str(gateway.state), "--agent", gateway.address,
                         "--quiesce-timeout", "300s"),
        env=repo_cli.env | {"OPENCLAW_GATEWAY_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # cleancut holds the lease (draining, waiting for the hung turn): turns are refused.
        _wait_refused(gateway, backup)
    finally:
        os.kill(backup.pid, signal.SIGKILL)
        backup.wait()
    killed = time.monotonic()
    # The admitted turn finishes; the gateway is then suspended with nobody to resume it.
    gateway.release_model()
    hung.join(120)
    assert replies and replies[0][0] == 200, replies
    status, body = gateway.chat("dave", "holder just died", timeout=30)
    assert status == 503, body
    return killed


def _wait_hung(gateway: Gateway) -> None:
    deadline = time.monotonic() + 120
    while _model_state(gateway)["hung"] < 1:
        assert time.monotonic() < deadline, "the hung turn never reached the model"
        time.sleep(0.1)


def _wait_refused(gateway: Gateway, backup: subprocess.Popen[bytes]) -> None:
    """Until the gateway refuses a turn: cleancut has asked it to suspend."""
    deadline = time.monotonic() + 300
    while gateway.chat("dave", "is cleancut holding you?", timeout=30)[0] != 503:
        assert backup.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)


LEASE_HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease break's notice; we poll instead
sys.stdin.readline()  # the test says when
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE: an open by anyone else now blocks
print("leased", flush=True)
while fcntl.fcntl(fd, 1025) == fcntl.F_WRLCK:  # F_GETLEASE: F_UNLCK once a break began
    time.sleep(0.01)
print("opened by another process", flush=True)
sys.stdin.read()  # the lease is held until the test lets go
"""


def _probe_database(directory: Path) -> Path:
    """A WAL database with its -wal beside it: SQLite opens the -wal by name, with a
    blocking open(), when it reads the database. It lives in a directory of the source
    that the gateway does not know (the gateway reads its workspace: a memory sync would
    open the -wal too), so cleancut is the only process that ever opens it."""
    directory.mkdir()
    probe = directory / "probe.sqlite"
    con = sqlite3.connect(probe)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    for side in ("-wal", "-shm"):
        Path(f"{probe}{side}").touch()
    return probe


def _threads_in(pid: int, wchan: str) -> dict[str, str]:
    """The threads of `pid` whose kernel wait channel is `wchan`, each with the system call
    it is in (number and arguments, from /proc)."""
    return {t.name: (t / "syscall").read_text().strip()
            for t in Path(f"/proc/{pid}/task").iterdir()
            if (t / "wchan").read_text().strip() == wchan}


def _openers(path: Path) -> list[str]:
    """Which processes hold `path` open (for the message when the proof fails)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd.parts[2])
    return found


def _kill_while_capturing(repo_cli: CLI, gw: Gateway) -> float:
    """cleancut killed -9 inside the capture, after ready and before resume, at a point the
    test proves rather than a moment it guesses.

    A file lease pins the point: the test holds a write lease on the probe database's
    -wal, so the open() SQLite makes of it when cleancut copies the database blocks in the
    kernel. The lease is taken only once the gateway refuses turns (cleancut has asked
    it to suspend, so its passes before the pause are done) while a hung turn keeps it
    draining, and the probe is touched then so that the capture copies it again. When the
    turn is released the gateway becomes ready and cleancut captures: the state dir, then
    the probe's directory, where it blocks. The holder sees the lease break begin;
    /proc shows a cleancut thread waiting on it in open(); cleancut is stopped (SIGSTOP),
    the same thread is seen stopped in the same open(), then cleancut is killed."""
    probe = _probe_database(gw.root / "probe")
    hour_ago = time.time() - 3600
    os.utime(probe, (hour_ago, hour_ago))
    replies: list[tuple[int, dict[str, object]]] = []
    hung = threading.Thread(target=lambda: replies.append(
        gw.chat("frank", "HANG until the lease is taken", timeout=300)))
    hung.start()
    _wait_hung(gw)
    backup = subprocess.Popen(
        repo_cli.command("backup", "--dir", f"state={gw.state}", "--dir",
                         f"workspace={gw.workspace}", "--dir", f"probe={probe.parent}",
                         "--name", "second",
                         "--agent", gw.address, "--quiesce-timeout", "300s",
                         "--exclude", "state/cache", "--exclude", "state/tmp",
                         "--exclude", "state/logs"),
        env=repo_cli.env | {"OPENCLAW_GATEWAY_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, f"{probe}-wal"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _wait_refused(gw, backup)  # suspension asked for: the passes before it are done
        os.utime(probe)  # changed since those passes: the capture copies it again
        assert holder.stdin is not None
        holder.stdin.write("take the lease\n")
        holder.stdin.flush()
        assert holder.stdout is not None and holder.stdout.readline() == "leased\n"
        gw.release_model()  # the drain ends, the gateway is ready, cleancut captures
        hung.join(120)
        assert replies and replies[0][0] == 200, replies
        assert holder.stdout.readline() == "opened by another process\n"
        # A thread of cleancut waits in the kernel on the lease: inside its open() of the
        # probe's -wal, which only the capture makes now.
        waiting = _threads_in(backup.pid, "__break_lease")
        assert waiting, f"the probe's -wal was opened by {_openers(Path(f'{probe}-wal'))}"
        os.kill(backup.pid, signal.SIGSTOP)
        while Path(f"/proc/{backup.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.01)  # until the stop has taken effect
        # Stopped there: the same threads, in the same open() (same call, same arguments),
        # now held by the stop rather than the lease.
        stopped = _threads_in(backup.pid, "do_signal_stop")
        assert {tid: stopped.get(tid) for tid in waiting} == waiting
        status, body = gw.chat("dave", "suspended while cleancut captures?", timeout=30)
        assert status == 503, body
    finally:
        os.kill(backup.pid, signal.SIGKILL)
        backup.wait()
        holder.kill()  # its descriptor closes: the lease is gone
        holder.wait()
    killed = time.monotonic()
    assert backup.returncode == -signal.SIGKILL
    status, body = gw.chat("dave", "holder died capturing", timeout=30)
    assert status == 503, body
    # Nothing of the killed backup was committed.
    assert all(s["name"] != "second" for s in repo_cli.ok("snapshots", "--json").json())
    return killed


def _serves_again_within_its_lease(gateway: Gateway, killed: float) -> None:
    """Nobody resumes: the lease's own expiry (120 s from the last prepare) reopens it."""
    while True:
        status, body = gateway.chat("dave", "are you back?", timeout=60)
        if status == 200:
            break
        assert status == 503, body
        assert time.monotonic() - killed < 120 + 30, "admission did not reopen after the lease"
        time.sleep(2)
    assert reply_text(body).endswith("are you back?")


def test_cleancut_killed_draining_or_capturing_leaves_a_gateway_that_serves_again(
    repo_cli: CLI, gateway: Gateway, channel_gateway: Channelled
) -> None:
    """Killed -9 while it waits on the drain (the module's gateway), and inside the capture
    (a second gateway): each gateway serves again by itself within its lease. Last in the
    module: the module's gateway stays closed for its whole lease (120 s); the two leases
    run out side by side."""
    second = channel_gateway.gw
    killed_draining = _kill_while_draining(repo_cli, gateway)
    killed_capturing = _kill_while_capturing(repo_cli, second)
    _serves_again_within_its_lease(gateway, killed_draining)
    _serves_again_within_its_lease(second, killed_capturing)
