"""Hot backups of a real OpenClaw gateway under load, and the gateway that comes back.

One gateway for the module (pinned openclaw, Node 24, a fake model), in a network
namespace with only loopback; cleancut runs there too, as the operator would run it:
`cleancut backup DIR --agent openclaw://127.0.0.1:PORT` with the token in
OPENCLAW_GATEWAY_TOKEN. Several clients send turns flat out while the backups run.
Every restore is checked with an SQLite new enough for the gateway's schema (Node 24's
node:sqlite): integrity_check on every database, and no session ending in a user
message without its reply. The same check is shown to fail on a copy taken without
suspension, and a gateway started on a restored copy continues a restored session.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI
from openclaw_gateway import (
    TOKEN,
    Gateway,
    NetNamespace,
    databases,
    http,
    integrity,
    reply_text,
    runtime,
    transcripts,
    unanswered,
)

from cleancut.hot.openclaw import queue_actions, state_databases

pytestmark = pytest.mark.timeout(900)

BACKUPS = 10
CLIENTS = 3
# Left out of the capture: what the gateway regenerates (UI assets, temp and lock
# files), its logs, and the test's own files beside the state dir.
EXCLUDES = ("state/cache", "state/tmp", "state/logs", "home", "gateway.out")
ENV = {"OPENCLAW_GATEWAY_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    rt = runtime()
    with NetNamespace():
        gw = Gateway(rt, tmp_path_factory.mktemp("openclaw-hot"))
        try:
            gw.start()
            yield gw
        finally:
            gw.stop()


def backup(cli: CLI, gw: Gateway, *extra: str) -> tuple[int, dict[str, object], str]:
    args = ["backup", str(gw.root), "--name", "gateway", "--agent", gw.address, "--json"]
    for pattern in EXCLUDES:
        args += ["--exclude", pattern]
    res = cli.run(*args, *extra, env=ENV)
    return res.code, (json.loads(res.out) if res.out.strip() else {}), res.err


class Load:
    """Clients sending turns flat out, each to its own session; 503s (suspended) retried."""

    def __init__(self, gw: Gateway, clients: int, limit_s: float = 600.0) -> None:
        self.gw = gw
        self.stop = threading.Event()
        self.served = [0] * clients
        self.refused = [0] * clients
        self.errors: list[str] = []
        self.limit = time.monotonic() + limit_s
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i: int) -> None:
        n = 0
        while not self.stop.is_set() and time.monotonic() < self.limit:
            n += 1
            try:
                status, body = self.gw.chat(f"load-{i}", f"turn {n} of client {i}", timeout=120)
            except OSError as exc:
                self.errors.append(f"client {i}: {exc}")
                return
            if status == 200:
                self.served[i] += 1
            elif status == 503:
                self.refused[i] += 1
                time.sleep(0.05)
            else:
                self.errors.append(f"client {i}: HTTP {status} {body}")
                return

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(180)


def state_inflight(root: Path) -> list[dict[str, object]]:
    return [a for db in state_databases(root) for a in queue_actions(db)]


def check_restore(cli: CLI, gw: Gateway, snapshot: str, target: Path) -> list[str]:
    cli.ok("restore", snapshot, "--target", str(target))
    problems = []
    found = databases(target / "state")
    if not any(p.name == "openclaw-agent.sqlite" for p in found):
        problems.append("no agent database restored")
    for path, result in integrity(gw.runtime, found).items():
        if result != ["ok"]:
            problems.append(f"{path}: {result[:3]}")
    problems += [f"unanswered: {s}" for s in unanswered(target / "state")]
    return problems


def test_hot_backups_under_load_are_clean_cuts(
    repo_cli: CLI, gateway: Gateway, tmp_path: Path
) -> None:
    summaries = []
    with Load(gateway, CLIENTS) as load:
        while min(load.served) < 1:  # every client has a session before the first cut
            assert time.monotonic() < load.limit and not load.errors, load.errors
            time.sleep(0.2)
        for _ in range(BACKUPS):
            code, summary, err = backup(repo_cli, gateway, "--quiesce-timeout", "60s")
            assert code == 0, err
            assert summary["consistency"] == "quiesced", summary
            assert summary["quiesce_missed"] is False
            summaries.append(summary)
            time.sleep(0.5)
    assert load.errors == []
    assert sum(load.served) > BACKUPS
    kinds = [s["kind"] for s in summaries]
    assert kinds[0] == "full" and "incremental" in kinds
    for s in summaries:
        steps = s["steps_ms"]
        assert isinstance(steps, dict)
        for step in ("hello", "quiesce", "flush", "capture", "resume", "store"):
            assert step in steps
        assert s["capture"]["agent"]["agent"] == "openclaw"  # type: ignore[index]
    for i, s in enumerate(summaries):
        problems = check_restore(repo_cli, gateway, str(s["snapshot_id"]), tmp_path / f"r{i}")
        assert problems == [], f"snapshot {i}: {problems[:5]}"
    listed = json.loads(repo_cli.ok("snapshots", "--json").out)
    assert {s["consistency"] for s in listed} == {"quiesced"}


def _wait_hung(gw: Gateway) -> None:
    deadline = time.monotonic() + 120
    while http("GET", f"http://127.0.0.1:{gw.model_port}/control/state")[1]["hung"] < 1:
        assert time.monotonic() < deadline, "the hung turn never reached the model"
        time.sleep(0.1)


def test_a_turn_that_never_ends_is_a_miss_and_a_copy_without_suspension_is_torn(
    repo_cli: CLI, gateway: Gateway, tmp_path: Path
) -> None:
    replies: list[tuple[int, dict[str, object]]] = []
    hung = threading.Thread(target=lambda: replies.append(
        gateway.chat("stuck", "HANG until released", timeout=300)))
    hung.start()
    try:
        _wait_hung(gateway)
        started = time.monotonic()
        code, _, err = backup(repo_cli, gateway, "--quiesce-timeout", "3s")
        assert code == 7, err
        assert "quiesce missed" in err and "\n" not in err.strip()
        assert time.monotonic() - started < 60
        # The miss resumed the gateway: other sessions are served at once.
        status, body = gateway.chat("bystander", "still serving?", timeout=60)
        assert status == 200, body
        status_doc = json.loads(repo_cli.ok("status", "--json").out)
        source = next(s for s in status_doc["sources"] if s["name"] == "gateway")
        assert source["consecutive_quiesce_misses"] >= 1
        # The control: the same databases copied through the backup API but without the
        # suspension (hooks that do nothing) hold the user's turn without its reply.
        args = ["backup", str(gateway.root), "--name", "unsuspended", "--json",
                "--pre", "true", "--post", "true"]
        for pattern in EXCLUDES:
            args += ["--exclude", pattern]
        summary = json.loads(repo_cli.ok(*args).out)
        assert summary["consistency"] == "hooked"
        target = tmp_path / "unsuspended"
        repo_cli.ok("restore", str(summary["snapshot_id"]), "--target", str(target))
        assert unanswered(target / "state") != []
    finally:
        gateway.release_model()
        hung.join(120)
    assert replies and replies[0][0] == 200, replies


def test_pending_deliveries_of_the_captured_state_are_the_inflight_actions(
    repo_cli: CLI, gateway: Gateway, tmp_path: Path
) -> None:
    code, summary, err = backup(repo_cli, gateway)
    assert code == 0, err
    assert summary["inflight"] == []  # no channel: the drain leaves no pending delivery
    target = tmp_path / "restored"
    repo_cli.ok("restore", str(summary["snapshot_id"]), "--target", str(target))
    assert not (tmp_path / "restored.inflight.json").exists()
    # The same reading, on the restored copy of the gateway's own schema, with entries
    # as the queue holds them: pending (sent or not yet) are in flight, failed are not.
    db = target / "state" / "state" / "openclaw.sqlite"
    con = sqlite3.connect(db)
    rows = [("outbound", "d-sent", "pending", 1796600000000),
            ("outbound", "d-new", "pending", None),
            ("outbound", "d-failed", "failed", None)]
    for queue, key, status, started in rows:
        con.execute(
            "INSERT INTO delivery_queue_entries (queue_name, id, status, entry_kind, channel,"
            " platform_send_started_at, entry_json, enqueued_at, updated_at)"
            " VALUES (?, ?, ?, 'reply', 'telegram', ?, '{}', 1796600000000, 1796600000123)",
            (queue, key, status, started))
    con.commit()
    con.close()
    found = {a["key"]: a for a in state_inflight(target)}
    assert set(found) == {"d-sent", "d-new"}
    assert found["d-sent"]["state"] == "unknown" and found["d-new"]["state"] == "intent"
    assert found["d-new"]["kind"] == "openclaw.reply.telegram"
    assert found["d-new"]["since"] == "2026-12-06T23:33:20.123Z"


def test_the_openclaw_preset_takes_a_cut_the_drill_boots_and_continues(
    repo_cli: CLI, gateway: Gateway, tmp_path: Path
) -> None:
    """`preset = "openclaw"` against the real gateway's config and state dir, with the
    gateway's own environment (its config and state dir as OpenClaw reads them): the
    state dir and the workspace outside it are one cut, what the gateway regenerates is
    left out, and a sandboxed gateway boots on the restore and continues a session."""
    for n in range(2):
        status, body = gateway.chat("drilled", f"drill history {n}")
        assert status == 200, body
    config = tmp_path / "cleancut.toml"
    config.write_text('[sources.claw]\npreset = "openclaw"\n')
    env = ENV | {"OPENCLAW_CONFIG_PATH": str(gateway.config_path),
                 "OPENCLAW_STATE_DIR": str(gateway.state)}
    shown = repo_cli.run("config", "show", "--source", "claw", "--json",
                         "--config", str(config), env=env)
    assert shown.code == 0, shown.err
    src = json.loads(shown.out)["source"]
    assert src["dirs"] == {"state": str(gateway.state), "workspace": str(gateway.workspace)}
    assert src["agent"] == gateway.address
    origins = {r["what"]: r["origin"] for r in src["resolved"]}
    assert origins["state dir"] == "$OPENCLAW_STATE_DIR"
    assert origins["workspace"] == "agents.defaults.workspace"
    assert origins["openclaw config"] == "$OPENCLAW_CONFIG_PATH"
    assert {"state/cache", "state/tmp", "state/logs"} <= set(src["exclude"])

    res = repo_cli.run("backup", "claw", "--json", "--config", str(config), env=env)
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["consistency"] == "quiesced" and summary["name"] == "claw"
    paths = {e["path"] for e in repo_cli.ok("ls", summary["snapshot_id"], "--json").json()}
    assert "state/state/openclaw.sqlite" in paths and "workspace/AGENTS.md" in paths
    left_out = [p for p in paths if p.startswith(("state/cache", "state/tmp", "state/logs"))
                or p.endswith(".lock") or ".sqlite.memory-reindex-" in p
                or ".reindex-lock.sqlite" in p]
    assert left_out == []
    target = tmp_path / "sandbox"
    assert check_restore(repo_cli, gateway, str(summary["snapshot_id"]), target) == []
    assert sorted(p.name for p in target.iterdir()) == ["state", "workspace"]
    # As restore-test's --smoke runs it. The live gateway keeps running beside the
    # drill's: the drill's own namespaces keep them apart (the port, and the process the
    # copy names as its databases' holder).
    drill = subprocess.run(
        [sys.executable, "-m", "cleancut.hot.openclaw_drill", str(target),
         "--openclaw", " ".join(gateway.openclaw()),
         "--session-key", "agent:main:openai-user:drilled"],
        capture_output=True, text=True, timeout=400)
    assert drill.returncode == 0, drill.stderr
    # The restored session's two turns were the model's history for the drill's turn.
    assert "answered with 3 user turn(s) of history" in drill.stdout, drill.stdout
    status, body = gateway.chat("drilled", "the live gateway still serves")
    assert status == 200, body
    assert reply_text(body) == "reply 3: the live gateway still serves"


def test_the_drill_fails_in_one_line_on_a_dir_without_a_state(tmp_path: Path) -> None:
    drill = subprocess.run([sys.executable, "-m", "cleancut.hot.openclaw_drill",
                            str(tmp_path), "--openclaw", "false"],
                           capture_output=True, text=True, timeout=60)
    assert drill.returncode == 1
    assert drill.stderr.startswith("openclaw drill: no OpenClaw state dir in ")
    assert drill.stderr.count("\n") == 1


def test_the_way_back_restore_beside_check_swap_start_continues_the_session(
    repo_cli: CLI, gateway: Gateway, tmp_path: Path
) -> None:
    """docs/openclaw.md's way back for a broken gateway, step by step."""
    for n in range(3):
        status, body = gateway.chat("resumed", f"before the cut {n}")
        assert status == 200, body
    code, summary, err = backup(repo_cli, gateway)
    assert code == 0 and summary["consistency"] == "quiesced", err
    status, body = gateway.chat("resumed", "after the cut, lost with the live gateway")
    assert status == 200, body
    # Restore beside the live state, and check the copies.
    beside = gateway.root.parent / (gateway.root.name + ".restored")
    assert check_restore(repo_cli, gateway, str(summary["snapshot_id"]), beside) == []
    # Stop the gateway (the copy names its process as the databases' holder: a gateway
    # started on it while that process runs on the same host refuses), then swap: the
    # old state is kept aside, never deleted. Last test of the module: it ends the
    # module's gateway and starts its successor at the same place.
    gateway.stop()
    kept = {}
    for part in ("state", "workspace"):
        kept[part] = gateway.root / f"{part}.before-restore"
        (gateway.root / part).rename(kept[part])
        (beside / part).rename(gateway.root / part)
    db = gateway.state / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    before = {sid: msgs for sid, msgs in transcripts(db).items()
              if any(t == "before the cut 2" for _, t in msgs)}
    assert len(before) == 1
    (sid, restored), = before.items()
    assert restored[-1] == ("assistant", "reply 3: before the cut 2")
    successor = Gateway(gateway.runtime, gateway.root, port=gateway.port,
                        model_port=gateway.model_port)
    try:
        successor.start()
        status, body = successor.chat("resumed", "after restore")
    finally:
        successor.stop()
    assert status == 200, body
    # The model saw the conversation up to the cut (3 turns), not the one after it.
    assert reply_text(body) == "reply 4: after restore"
    after = transcripts(db)[sid]
    assert after[:len(restored)] == restored
    assert after[len(restored):] == [("user", "after restore"),
                                     ("assistant", "reply 4: after restore")]
    # The state from before the restore is still there, with the turn after the cut.
    old = kept["state"] / "agents" / "main" / "agent" / "openclaw-agent.sqlite"
    assert any(t == "after the cut, lost with the live gateway"
               for msgs in transcripts(old).values() for _, t in msgs)
