"""Hot backup of a live agent: the simulated agent runs flat out in its own process,
and `cleancut backup --agent` takes clean cuts of it that restore consistent.

The agent is real (its own process, the SDK on a real Unix socket); the faults are
real (a hung agent, SIGKILL and SIGSTOP of the backup process, actions that never
settle). Every restored workspace goes through the invariant checker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI, agent_hello, assert_no_traceback

from cleancut.testing.simulated.checker import check_workspace

HERE = Path(__file__).parent


@dataclass
class Agent:
    root: Path
    socket: Path
    oracle: Path
    proc: subprocess.Popen[str]

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def hello(self) -> dict[str, object]:
        """Ask the agent's state over a second connection (what an operator could do)."""
        return agent_hello(self.socket, timeout=5)

    def progress(self) -> int:
        """How far the agent has got: the oracle's size grows with every write it makes."""
        return self.oracle.stat().st_size


def start_agent(tmp_path: Path, *extra: str, name: str = "agent") -> Agent:
    root = tmp_path / name
    sock = tmp_path / f"{name}.sock"
    oracle = tmp_path / f"{name}.oracle"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "cleancut.testing.simulated", "run",
            "--root", str(root), "--socket", str(sock), "--oracle", str(oracle),
            "--seed", "7", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as --freeze expects
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise AssertionError(f"agent did not start: {line!r} {proc.communicate()[1]}")
    return Agent(root, sock, oracle, proc)


def stop_agent(agent: Agent) -> None:
    if agent.proc.poll() is None:
        os.killpg(agent.proc.pid, signal.SIGCONT)
        agent.proc.terminate()
        try:
            agent.proc.wait(10)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.wait()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = start_agent(tmp_path)
    yield a
    stop_agent(a)


def wait_running(agent: Agent, within: float) -> float:
    """Seconds until the agent reports running and has written again."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if agent.hello().get("state") == "running":
            before = agent.progress()
            while time.monotonic() - started < within:
                if agent.progress() > before:
                    return time.monotonic() - started
                time.sleep(0.01)
        time.sleep(0.01)
    raise AssertionError(f"agent not running again within {within}s")


def hot(cli: CLI, agent: Agent, *extra: str) -> dict[str, object]:
    res = cli.ok(
        "backup", str(agent.root), "--name", "agent", "--agent", agent.address,
        "--quiesce-timeout", "10s", "--horizon", "2s", "--json", *extra,
    )
    return json.loads(res.out)


def restore(cli: CLI, snapshot: str, target: Path) -> None:
    cli.ok("restore", snapshot, "--target", str(target))


def violations(agent: Agent, target: Path, summary: dict[str, object], quiesced: bool = True
               ) -> list[str]:
    keys = {a["key"] for a in summary.get("inflight", [])}  # type: ignore[union-attr]
    return check_workspace(target, agent.oracle, inflight_ok=keys, quiesced=quiesced)


# --- (a) clean cuts under load -------------------------------------------------


def test_hot_backups_under_load_restore_consistent(repo_cli: CLI, agent: Agent, tmp_path: Path
                                                    ) -> None:
    summaries = []
    for _ in range(21):
        summary = hot(repo_cli, agent)
        assert summary["consistency"] == "quiesced"
        assert summary["quiesce_missed"] is False
        assert isinstance(summary["pause_ms"], float)
        for step in ("hello", "quiesce", "flush", "horizon", "capture", "resume", "store"):
            assert step in summary["steps_ms"]  # type: ignore[operator]
        summaries.append(summary)
        time.sleep(0.05)
    assert agent.proc.poll() is None
    kinds = [s["kind"] for s in summaries]
    assert kinds[0] == "full" and "incremental" in kinds
    for i, summary in enumerate(summaries):
        target = tmp_path / f"restored-{i}"
        restore(repo_cli, str(summary["snapshot_id"]), target)
        found = violations(agent, target, summary)
        assert found == [], f"snapshot {i} ({summary['kind']}): {found[:5]}"
    listed = json.loads(repo_cli.ok("snapshots", "--json").out)
    assert {s["consistency"] for s in listed} == {"quiesced"}


# --- (c) an agent that never goes idle ----------------------------------------


def test_agent_that_never_quiesces_is_a_miss_and_keeps_running(repo_cli: CLI, tmp_path: Path
                                                                 ) -> None:
    hung = start_agent(tmp_path, "--hang", name="hung")
    alert_file = tmp_path / "alerts"
    try:
        for attempt in range(3):
            started = time.monotonic()
            res = repo_cli.run(
                "backup", str(hung.root), "--name", "hung", "--agent", hung.address,
                "--quiesce-timeout", "1s",
                "--alert-command", f"echo \"$CLEANCUT_ALERT\" >> {alert_file}",
            )
            took = time.monotonic() - started
            assert res.code == 7, res.err
            assert "quiesce missed" in res.err
            assert took < 1 + 2 + 2 + 15, took  # timeout + grace + resume: a generous bound
            wait_running(hung, within=10.0)  # runs again (raises if not)
            assert (alert_file.exists()) == (attempt == 2)
        listed = json.loads(repo_cli.ok("snapshots", "--json").out)
        assert [s for s in listed if s["consistency"] == "quiesced"] == []
        status = repo_cli.run("status", "--json")
        health = json.loads(status.out)
        source = next(s for s in health["sources"] if s["name"] == "hung")
        assert source["consecutive_quiesce_misses"] == 3
        assert source["state"] == "critical"
        assert "3 consecutive backup windows missed quiesce" in alert_file.read_text()
    finally:
        stop_agent(hung)


def test_silent_agent_is_a_miss_at_the_timeout(repo_cli: CLI, tmp_path: Path) -> None:
    """A process that accepts the connection and answers hello, then never replies."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()
        held.append(conn)
        conn.recv(65536)  # hello
        conn.sendall(b'{"id":1,"ok":true,"protocol":1,"agent":"silent","capabilities":[]}\n')
        while conn.recv(65536):  # never answer quiesce
            pass

    threading.Thread(target=serve, daemon=True).start()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f").write_text("x")
    # Bounded: the command returns on its own (a hang would meet the suite's per-test
    # timeout), and the line names the timeout it waited for.
    res = repo_cli.run("backup", str(workspace), "--agent", f"unix:{path}",
                       "--quiesce-timeout", "500ms")
    assert res.code == 7, res.err
    assert "did not answer within 0.5s" in res.err
    server.close()


def test_fallbacks_label_the_snapshot_for_what_it_is(repo_cli: CLI, tmp_path: Path) -> None:
    hung = start_agent(tmp_path, "--hang", name="hung")
    try:
        for fallback in ("unquiesced", "frozen"):
            res = repo_cli.run(
                "backup", str(hung.root), "--name", "hung", "--agent", hung.address,
                "--quiesce-timeout", "500ms", "--fallback", fallback, "--json",
            )
            assert res.code == 7, res.err
            summary = json.loads(res.out)
            assert summary["consistency"] == fallback
            assert summary["quiesce_missed"] is True
            wait_running(hung, within=10.0)
        listed = json.loads(repo_cli.ok("snapshots", "--json").out)
        assert sorted(s["consistency"] for s in listed) == ["frozen", "unquiesced"]
    finally:
        stop_agent(hung)


# --- (d) the backup process dies or hangs while the agent is quiesced -----------


def _backup_in_background(cli: CLI, agent: Agent, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli.command("backup", str(agent.root), "--name", "agent", "--agent", agent.address,
                    "--quiesce-timeout", "10s", *extra),
        env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )


def _wait_quiesced(agent: Agent, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if agent.hello().get("state") == "quiesced":
            return
        time.sleep(0.01)
    raise AssertionError("the agent never reported quiesced")


def test_backup_killed_while_agent_quiesced_agent_resumes(repo_cli: CLI, tmp_path: Path) -> None:
    # Actions that never settle hold the backup in its horizon: a long, known pause.
    stuck = start_agent(tmp_path, "--async-fraction", "1", "--stuck", "1", name="stuck")
    try:
        # A lease far longer than the wait below: the agent running again within the wait
        # can only be the closed connection resuming it, never the lease running out.
        proc = _backup_in_background(repo_cli, stuck, "--horizon", "60s", "--lease", "600s")
        _wait_quiesced(stuck)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_running(stuck, within=60.0)
    finally:
        stop_agent(stuck)


def test_backup_hung_while_agent_quiesced_lease_resumes_it(repo_cli: CLI, tmp_path: Path) -> None:
    stuck = start_agent(tmp_path, "--async-fraction", "1", "--stuck", "1", name="stuck")
    try:
        proc = _backup_in_background(repo_cli, stuck, "--horizon", "60s", "--lease", "3s")
        _wait_quiesced(stuck)
        proc.send_signal(signal.SIGSTOP)  # connection open, no renewals
        try:
            # The connection stays open (the process is stopped, not dead): only the
            # lease running out can resume the agent.
            wait_running(stuck, within=60.0)
        finally:
            proc.send_signal(signal.SIGCONT)
        # The backup, woken, learns that its lease lapsed: no quiesced snapshot from it.
        assert proc.wait(60) == 7
        listed = json.loads(repo_cli.ok("snapshots", "--json").out)
        assert [s for s in listed if s["consistency"] == "quiesced"] == []
    finally:
        stop_agent(stuck)


# --- (e) resume twice, resume racing quiesce: through a real backup -------------


def test_resume_from_operator_during_backup_never_leaves_agent_paused(
    repo_cli: CLI, tmp_path: Path
) -> None:
    stuck = start_agent(tmp_path, "--async-fraction", "1", "--stuck", "1", name="stuck")
    try:
        proc = _backup_in_background(repo_cli, stuck, "--horizon", "60s")
        _wait_quiesced(stuck)
        for _ in range(2):  # an operator's resume, twice: both fine, agent runs
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(stuck.socket))
                s.sendall(b'{"id":9,"op":"resume"}\n')
                assert json.loads(s.recv(65536))["state"] == "running"
        wait_running(stuck, within=60.0)
        assert proc.wait(90) == 7  # its lease is gone: the backup must not claim quiesced
    finally:
        stop_agent(stuck)


# --- (f) actions that never settle --------------------------------------------


def test_unsettled_actions_are_recorded_and_reported_on_restore(
    repo_cli: CLI, tmp_path: Path
) -> None:
    stuck = start_agent(tmp_path, "--async-fraction", "1", "--stuck", "2", name="stuck")
    try:
        time.sleep(0.5)
        summary = hot(repo_cli, stuck, "--horizon", "300ms")
    finally:
        stop_agent(stuck)
    inflight = summary["inflight"]
    assert isinstance(inflight, list)
    unsettled = [a for a in inflight if a["state"] in ("intent", "started")]
    assert len(unsettled) >= 1
    assert all(a["key"] and a["kind"] and a["since"] for a in inflight)
    target = tmp_path / "restored"
    res = repo_cli.ok("restore", str(summary["snapshot_id"]), "--target", str(target))
    for action in unsettled:
        assert action["key"] in res.err
    written = json.loads((tmp_path / "restored.inflight.json").read_text())
    assert {a["key"] for a in written["inflight"]} == {a["key"] for a in inflight}
    shown = json.loads(repo_cli.ok("inflight", str(summary["snapshot_id"]), "--json").out)
    assert shown["inflight"] == inflight
    assert violations(stuck, target, summary) == []


# --- (g) an agent written from the protocol page alone -------------------------


def test_minimal_hand_written_agent(repo_cli: CLI, tmp_path: Path) -> None:
    workspace = tmp_path / "minimal"
    sock = tmp_path / "minimal.sock"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "minimal_agent.py"), "--socket", str(sock),
         "--workspace", str(workspace)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        for _ in range(3):
            summary = json.loads(repo_cli.ok(
                "backup", str(workspace), "--agent", f"unix:{sock}", "--json",
                "--quiesce-timeout", "5s", "--horizon", "1s",
            ).out)
            assert summary["consistency"] == "quiesced"
        target = tmp_path / "restored"
        repo_cli.ok("restore", "latest", "--target", str(target))
        for path in target.rglob("*.json"):
            json.loads(path.read_text())
        for path in target.rglob("*.jsonl"):
            for line in path.read_text().splitlines():
                json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


# --- the other capture modes ---------------------------------------------------


def test_freeze_captures_a_frozen_snapshot(repo_cli: CLI, agent: Agent, tmp_path: Path) -> None:
    res = repo_cli.ok("backup", str(agent.root), "--name", "agent",
                      "--freeze", str(agent.proc.pid), "--json")
    summary = json.loads(res.out)
    assert summary["consistency"] == "frozen"
    assert summary["pause_ms"] is not None
    wait_running(agent, within=1.0)
    target = tmp_path / "restored"
    restore(repo_cli, str(summary["snapshot_id"]), target)
    # Crash-consistent: leftovers (.tmp, .lock) are allowed, torn files are not.
    assert violations(agent, target, summary, quiesced=False) == []


def test_hooks_run_around_the_capture_and_post_always_runs(
    repo_cli: CLI, tmp_path: Path, workspace: Path
) -> None:
    log = tmp_path / "hooks.log"
    res = repo_cli.ok(
        "backup", str(workspace), "--json",
        "--pre", f"echo pre $CLEANCUT_SOURCE >> {log}",
        "--post", f"echo post >> {log}",
    )
    assert json.loads(res.out)["consistency"] == "hooked"
    assert log.read_text().splitlines() == [f"pre {workspace}", "post"]
    log.unlink()
    res = repo_cli.run(
        "backup", str(workspace), "--pre", "echo no way >&2; exit 3",
        "--post", f"echo post >> {log}",
    )
    assert res.code == 9, res.err
    assert "pre hook exited 3: no way" in res.err
    assert log.read_text().splitlines() == ["post"]
    res = repo_cli.run("backup", str(workspace), "--pre", "sleep 30", "--hook-timeout", "500ms")
    assert res.code == 9 and "timed out" in res.err


# --- the config file: a source with an agent, its own timeouts, and tick --------


def _config(tmp_path: Path, agent: Agent, overrides: str) -> Path:
    path = tmp_path / "cleancut.toml"
    path.write_text(
        f'[sources.live]\npath = "{agent.root}"\nagent = "{agent.address}"\n'
        f"[sources.live.overrides]\n{overrides}\n"
    )
    return path


def test_config_source_with_agent_and_its_own_quiesce_timeout(repo_cli: CLI, tmp_path: Path
                                                               ) -> None:
    hung = start_agent(tmp_path, "--hang", name="hung")
    try:
        config = _config(tmp_path, hung, 'quiesce_timeout = "500ms"')
        res = repo_cli.run("backup", "live", "--config", str(config))
        assert res.code == 7, res.err
        assert "within 0.5s" in res.err or "(timeout 0.5s)" in res.err
        # The command line wins over the file.
        res = repo_cli.run("backup", "live", "--config", str(config), "--quiesce-timeout", "1s")
        assert res.code == 7 and "1s" in res.err
    finally:
        stop_agent(hung)


def test_tick_takes_hot_backups_of_sources_with_an_agent(repo_cli: CLI, agent: Agent,
                                                         tmp_path: Path) -> None:
    config = _config(tmp_path, agent, 'horizon = "1s"')
    res = repo_cli.ok("tick", "--config", str(config), "--json")
    listed = json.loads(repo_cli.ok("snapshots", "--json").out)
    assert [(s["name"], s["consistency"]) for s in listed] == [("live", "quiesced")], res.out
    target = tmp_path / "restored"
    restore(repo_cli, "latest", target)
    snap = json.loads(repo_cli.ok("inflight", "latest", "--json").out)
    assert check_workspace(target, agent.oracle, inflight_ok={a["key"] for a in snap["inflight"]}
                           ) == []


def test_unreachable_agent_is_one_line_exit_8_and_a_recorded_failure(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    res = repo_cli.run("backup", str(workspace), "--name", "gone",
                       "--agent", f"unix:{tmp_path / 'nobody.sock'}")
    assert res.code == 8, res.err
    assert "no agent listening" in res.err
    assert_no_traceback(res)
    health = json.loads(repo_cli.ok("status", "--json").out)
    source = next(s for s in health["sources"] if s["name"] == "gone")
    assert source["last_attempt_ok"] is False
    assert "no agent listening" in source["last_attempt_error"]


def test_hot_only_options_are_refused_on_a_plain_backup(repo_cli: CLI, workspace: Path) -> None:
    for extra in (("--lease", "5s"), ("--fallback", "frozen"), ("--horizon", "1s")):
        res = repo_cli.run("backup", str(workspace), *extra)
        assert res.code == 2, (extra, res.err)
        assert "need a hot backup" in res.err
    res = repo_cli.run("backup", str(workspace), "--agent", "tcp:localhost:1")
    assert res.code == 2 and "unix:PATH" in res.err


def test_restore_of_a_snapshot_without_inflight_removes_a_stale_file(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    repo_cli.ok("backup", str(workspace))
    target = tmp_path / "restored"
    stale = tmp_path / "restored.inflight.json"
    stale.write_text(json.dumps({  # what an earlier restore wrote
        "snapshot": "0" * 64, "name": "old", "time": "2026-11-26T17:53:01Z",
        "consistency": "quiesced", "inflight": [{"key": "old"}],
    }))
    repo_cli.ok("restore", "latest", "--target", str(target))
    assert not stale.exists()
    # A file of the operator's at that name is not ours: left alone.
    (tmp_path / "restored-again.inflight.json").write_text("my notes")
    repo_cli.ok("restore", "latest", "--target", str(tmp_path / "restored-again"))
    assert (tmp_path / "restored-again.inflight.json").read_text() == "my notes"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('agent = "unix:/x.sock"\npre = "true"', "choose one capture mode"),
        ('fallback = "frozen"', "a fallback needs 'agent'"),
        ('agent = "tcp:1"', "expected unix:PATH"),
    ],
)
def test_config_refuses_capture_settings_that_cannot_work(
    repo_cli: CLI, workspace: Path, tmp_path: Path, table: str, message: str
) -> None:
    config = tmp_path / "cleancut.toml"
    config.write_text(f'[sources.s]\npath = "{workspace}"\n{table}\n')
    res = repo_cli.run("backup", "s", "--config", str(config))
    assert res.code == 2, res.err
    assert message in res.err and "sources.s" in res.err
    assert_no_traceback(res)


def test_config_append_only_and_alert_command(repo_cli: CLI, tmp_path: Path) -> None:
    hung = start_agent(tmp_path, "--hang", name="hung")
    alerts = tmp_path / "alerts"
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'append_only = true\nalert_command = "echo $CLEANCUT_MISSES >> {alerts}"\n'
        f'[sources.live]\npath = "{hung.root}"\nagent = "{hung.address}"\n'
        f'fallback = "unquiesced"\n[sources.live.overrides]\nquiesce_timeout = "300ms"\n'
    )
    try:
        res = repo_cli.run("tick", "--config", str(config))  # no snapshot yet: due
        assert "quiesce missed" in res.out, res.out
        for _ in range(2):
            res = repo_cli.run("backup", "live", "--config", str(config))
            assert res.code == 7, res.err
    finally:
        stop_agent(hung)
    assert alerts.read_text().split() == ["3"]
    res = repo_cli.run("prune", "--config", str(config))
    assert res.code == 16 and "append-only" in res.err
