"""tick does what is due once, and nothing on an immediate second run; daemon serves metrics."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from conftest import CLI, PASSWORD
from prometheus_client.parser import text_string_to_metric_families


def _config(cli: CLI, workspace: Path, tmp_path: Path, extra: str = "") -> dict[str, str]:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'repository = "{cli.repo}"\npassword_file = "{pw}"\n'
        f'[sources.agent]\npath = "{workspace}"\n' + extra
    )
    return {"CLEANCUT_CONFIG": str(config)}


def _tick(cli: CLI, env: dict[str, str], now: str) -> list[dict]:
    res = cli.run("tick", "--json", env=env | {"CLEANCUT_NOW": now})
    assert res.code == 0, res.err
    return res.json()


def test_tick_does_the_due_work_once(repo_cli: CLI, workspace: Path, tmp_path: Path):
    env = _config(repo_cli, workspace, tmp_path)
    first = _tick(repo_cli, env, "2026-11-20T00:00:00Z")
    assert [(a["what"], a["ok"]) for a in first] == [("backup", True), ("restore-test", True)]
    assert "full" in first[0]["detail"]
    assert _tick(repo_cli, env, "2026-11-20T00:00:00Z") == []  # nothing due
    assert _tick(repo_cli, env, "2026-11-20T00:04:00Z") == []  # cadence is 5 minutes

    later = _tick(repo_cli, env, "2026-11-20T00:05:00Z")
    assert [a["what"] for a in later] == ["backup"]
    assert "incremental" in later[0]["detail"]

    week = _tick(repo_cli, env, "2026-11-27T00:05:00Z")
    assert [a["what"] for a in week] == ["backup", "restore-test"]
    assert "full" in week[0]["detail"]  # the last full was older than 24 h

    attempts = repo_cli.ok("status", "--json").json()
    assert attempts  # status sees the attempts and tests tick recorded


def test_tick_skips_a_source_another_tick_holds(repo_cli: CLI, workspace: Path, tmp_path: Path):
    env = _config(repo_cli, workspace, tmp_path)
    _tick(repo_cli, env, "2026-11-20T00:00:00Z")
    (lock,) = list(repo_cli.cache.rglob("tick-agent.lock"))
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        actions = _tick(repo_cli, env, "2026-11-21T00:00:00Z")
    finally:
        os.close(fd)
    assert [(a["what"], a["detail"]) for a in actions] == [
        ("skip", "another tick is working on it")
    ]


def test_tick_without_sources_is_a_usage_error(repo_cli: CLI):
    res = repo_cli.run("tick")
    assert res.code == 2 and "config file" in res.err


def test_daemon_serves_metrics_on_loopback(repo_cli: CLI, workspace: Path, tmp_path: Path):
    env = (
        repo_cli.env
        | _config(repo_cli, workspace, tmp_path)
        | {"CLEANCUT_NOW": "2026-11-20T00:00:00Z"}
    )
    proc = subprocess.Popen(
        repo_cli.command("daemon", "--interval", "1s", "--metrics-port", "0", "--page-port", "-1"),
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", line).group(1))  # type: ignore[union-attr]
        body = ""
        for _ in range(480):
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
            if "cleancut_health_state" in body:
                break
            time.sleep(0.25)  # the first tick is still running
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        assert samples[
            ("cleancut_last_success_timestamp_seconds", (("kind", "full"), ("source", "agent")))
        ] == datetime(2026, 11, 20, tzinfo=UTC).timestamp()
        assert samples[("cleancut_backup_attempts_total", (("source", "agent"),))] == 1
        assert samples[("cleancut_restore_test_passed", (("source", "agent"),))] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_tick_forgets_by_the_configured_rules_and_prunes(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    env = _config(
        repo_cli,
        workspace,
        tmp_path,
        "[sources.agent.retention]\nkeep_last = 1\n",
    )
    config = Path(env["CLEANCUT_CONFIG"])
    config.write_text('prune_interval = "1d"\n' + config.read_text())
    first = _tick(repo_cli, env, "2026-11-20T00:00:00Z")
    assert [a["what"] for a in first] == ["backup", "restore-test", "prune"]
    for minute in (5, 10, 15, 20):
        note = workspace / "workspace" / "MEMORY.md"
        note.write_text(note.read_text() + f"{minute}\n")
        _tick(repo_cli, env, f"2026-11-20T00:{minute:02d}:00Z")
    # Four days on: a new full (the old one is past 24 h); the old chain's incrementals are
    # past the 72 h incremental retention and keep_last 1 keeps only the new full, so the
    # old chain goes, and a day has passed since the last prune.
    later = _tick(repo_cli, env, "2026-11-24T01:00:00Z")
    assert [a["what"] for a in later] == ["backup", "forget", "prune"]
    assert "full" in later[0]["detail"]
    forget = next(a for a in later if a["what"] == "forget")
    assert forget["ok"] and "forgotten" in forget["detail"]
    kept = repo_cli.ok("snapshots", "--json").json()
    assert [s["kind"] for s in kept] == ["full"]
    repo_cli.ok("check")
    assert _tick(repo_cli, env, "2026-11-24T01:00:00Z") == []
