"""status: ok, warn and critical, each with its reasons, from the repository alone.

Time moves with the injected clock (CLEANCUT_NOW), never with sleeps. Backup attempts
are written with the store function the backup command calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback

from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.repository.attempts import backup_attempts, record_backup_attempt
from cleancut.repository.chain import snapshot_state
from cleancut.repository.pack import pack_name
from cleancut.repository.repository import Repository
from cleancut.testing.sample import mutate_workspace

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def at(hours: float) -> dict[str, str]:
    """The injected clock: T0 plus some hours."""
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


def backup(cli: CLI, src: Path, hours: float) -> dict[str, Any]:
    return cli.ok("backup", str(src), "--name", "agent", "--json", env=at(hours)).json()


def status(cli: CLI, hours: float, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli.run("status", "--json", "--check", *args, env=at(hours))
    assert res.code in (0, 3, 4), res.err
    return res.code, res.json()


def only(doc: dict[str, Any]) -> dict[str, Any]:
    (source,) = doc["sources"]
    return source


@contextmanager
def opened(cli: CLI, monkeypatch: pytest.MonkeyPatch, hours: float) -> Iterator[Repository]:
    """The repository, in this process, with the clock at T0 + hours."""
    monkeypatch.setenv("CLEANCUT_NOW", at(hours)["CLEANCUT_NOW"])
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        yield repo
    finally:
        repo.close()


def attempt(repo: Repository, ok: bool = True, missed: bool = False, error: str = "") -> str:
    return record_backup_attempt(
        repo,
        name="agent",
        ok=ok,
        kind="incremental" if ok else None,
        snapshot_id=None,
        error=error or None,
        duration_s=1.5,
        quiesce_missed=missed,
        consistency="journal" if missed else "quiesced",
    )


def test_ok_with_everything_reported(repo_cli: CLI, workspace: Path, tmp_path: Path):
    full = backup(repo_cli, workspace, 0)
    mutate_workspace(workspace)
    inc = backup(repo_cli, workspace, 1)
    repo_cli.ok("restore-test", env=at(2))

    code, doc = status(repo_cli, 3)
    assert code == 0 and doc["state"] == "ok"
    src = only(doc)
    assert (src["name"], src["state"], src["reasons"]) == ("agent", "ok", [])
    assert src["last_full_time"] == iso(T0) and full["kind"] == "full"
    assert src["last_full_age_s"] == 3 * 3600
    assert src["last_incremental_age_s"] == 2 * 3600
    assert (src["chain"], src["chain_length"], src["chain_age_s"]) == (inc["chain"], 2, 3 * 3600)
    test = src["last_restore_test"]
    assert test["passed"] is True and test["snapshot"] == inc["snapshot_id"]
    assert test["age_s"] == 3600 and test["rto_s"] >= 0
    assert src["attempts"] == {"7d": 2, "30d": 2}  # each backup records its attempt
    assert src["success_rate"] == {"7d": 1.0, "30d": 1.0}
    assert src["last_attempt_ok"] is True
    assert src["consecutive_quiesce_misses"] == 0

    # The text view: a table, and no reason lines when all is well.
    res = repo_cli.ok("status", env=at(3))
    assert "agent" in res.out and " ok " in res.out and "passed 60m ago" in res.out

    # A fresh host: no cache at all, same answer from the repository alone.
    fresh = repo_cli.run(
        "status", "--json", env=at(3) | {"CLEANCUT_CACHE_DIR": str(tmp_path / "new-cache")}
    )
    assert fresh.code == 0 and fresh.json() == doc


def test_warn_when_the_last_full_is_older_than_the_profile_allows(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    code, doc = status(repo_cli, 23)
    assert code == 0 and only(doc)["state"] == "ok"
    code, doc = status(repo_cli, 25)
    assert code == 3 and doc["state"] == "warn"
    assert only(doc)["reasons"] == ["last full older than 24h (25h00m old)"]

    # without --check the exit code stays 0; the reason is printed under the table
    res = repo_cli.run("status", env=at(25))
    assert res.code == 0
    assert "warn: agent: last full older than 24h (25h00m old)" in res.out


def test_critical_when_the_chain_reaches_the_cap(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    code, doc = status(repo_cli, 73)
    assert code == 4 and doc["state"] == "critical"
    assert only(doc)["reasons"] == [
        "chain at the 72h cap (started 3d1h ago)",
        "last full older than 24h (3d1h old)",
    ]


def test_warn_without_a_passing_restore_test_in_8_days(repo_cli: CLI, workspace: Path):
    day = 24
    backup(repo_cli, workspace, 0)
    repo_cli.ok("restore-test", env=at(1))
    backup(repo_cli, workspace, 7 * day)  # a daily full keeps the rest quiet
    code, doc = status(repo_cli, 7 * day + 1)
    assert code == 0, doc  # 7 days since the last pass: still on time
    backup(repo_cli, workspace, 9 * day)
    code, doc = status(repo_cli, 9 * day + 1)
    assert code == 3
    assert only(doc)["reasons"] == ["no passing restore test in 8 days (last pass 9d0h ago)"]

    repo_cli.ok("restore-test", env=at(9 * day + 2))
    code, doc = status(repo_cli, 9 * day + 3)
    assert code == 0 and only(doc)["reasons"] == []


def test_a_source_never_restore_tested(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    backup(repo_cli, workspace, 24 * 7 + 12)
    code, doc = status(repo_cli, 24 * 7 + 13)
    assert code == 0, doc  # a week and a half-day old: the day of grace is not over
    backup(repo_cli, workspace, 24 * 8 + 6)
    code, doc = status(repo_cli, 24 * 8 + 7)
    assert code == 3
    assert only(doc)["reasons"] == ["no passing restore test in 8 days (never passed)"]
    assert only(doc)["last_restore_test"] is None


def test_critical_when_the_last_restore_test_failed(repo_cli: CLI, workspace: Path):
    snap = backup(repo_cli, workspace, 0)
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        node = snapshot_state(repo, repo.load_snapshot(snap["snapshot_id"]))["workspace/SOUL.md"]
        loc = repo.locate(bytes.fromhex(node.content[0]))
    finally:
        repo.close()
    pack = repo_cli.repo / pack_name(loc.pack_id)
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + 5] ^= 0x01
    pack.write_bytes(bytes(data))
    assert repo_cli.run("restore-test", env=at(1)).code == 4

    code, doc = status(repo_cli, 2)
    assert code == 4
    assert only(doc)["reasons"] == [
        f"last restore test failed (restore, verify; snapshot {snap['snapshot_id'][:12]}, 60m ago)"
    ]
    assert "FAILED 60m ago" in repo_cli.ok("status", env=at(2)).out


def test_quiesce_misses_success_rates_and_a_failed_backup(
    repo_cli: CLI, workspace: Path, monkeypatch: pytest.MonkeyPatch
):
    backup(repo_cli, workspace, 0)
    repo_cli.ok("restore-test", env=at(0.5))
    with opened(repo_cli, monkeypatch, -20 * 24) as repo:
        attempt(repo, ok=False, error="old failure")  # inside 30 days, outside 7
    for hour, missed in ((1, False), (2, True), (3, True)):
        with opened(repo_cli, monkeypatch, hour) as repo:
            attempt(repo, missed=missed)

    code, doc = status(repo_cli, 4)
    src = only(doc)
    assert code == 0 and src["consecutive_quiesce_misses"] == 2
    assert src["attempts"] == {"7d": 4, "30d": 5}  # the backup at 0h recorded one too
    assert src["success_rate"] == {"7d": 1.0, "30d": 0.8}

    with opened(repo_cli, monkeypatch, 4) as repo:
        attempt(repo, ok=False, missed=True, error="quiesce timed out after 60s")
        assert len(backup_attempts(repo, "agent")) == 6
        assert backup_attempts(repo, "someone else") == []
    code, doc = status(repo_cli, 5)
    assert code == 4 and doc["state"] == "critical"
    assert only(doc)["reasons"] == [
        "3 consecutive backup windows missed quiesce",
        "last backup failed (60m ago): quiesce timed out after 60s",
    ]
    assert only(doc)["success_rate"] == {"7d": 0.8, "30d": 0.6667}
    res = repo_cli.ok("status", env=at(5))
    assert "80% (4/5)" in res.out and "67% (4/6)" in res.out

    # a window that quiesces ends the run of misses; a later snapshot supersedes the failure
    with opened(repo_cli, monkeypatch, 6) as repo:
        attempt(repo, ok=False, error="disk full")
    code, doc = status(repo_cli, 6.5)
    assert code == 3 and only(doc)["reasons"] == ["last backup failed (30m ago): disk full"]
    mutate_workspace(workspace)
    backup(repo_cli, workspace, 7)
    code, doc = status(repo_cli, 7.5)
    assert code == 0 and only(doc)["reasons"] == []


def test_sources_are_judged_apart(repo_cli: CLI, workspace: Path, tmp_path: Path):
    backup(repo_cli, workspace, 0)
    repo_cli.ok("restore-test", env=at(0.5))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("hello")
    repo_cli.ok("backup", str(other), "--name", "other", env=at(20))
    repo_cli.ok("restore-test", "--source", "other", env=at(20.5))

    code, doc = status(repo_cli, 25)
    assert code == 3 and doc["state"] == "warn"
    states = {s["name"]: s["state"] for s in doc["sources"]}
    assert states == {"agent": "warn", "other": "ok"}
    code, doc = status(repo_cli, 25, "--source", "other")
    assert code == 0 and [s["name"] for s in doc["sources"]] == ["other"]
    res = repo_cli.run("status", "--source", "nobody", env=at(25))
    assert res.code == 2 and "no snapshot or backup attempt of source 'nobody'" in res.err
    assert_no_traceback(res)


def test_an_empty_repository(repo_cli: CLI):
    res = repo_cli.run("status")
    assert res.code == 0 and "no backups yet" in res.out
    res = repo_cli.run("status", "--check", "--json")
    assert res.code == 4 and res.json()["sources"] == []


def test_each_source_is_judged_by_its_own_profile(cli: CLI, workspace: Path, tmp_path: Path):
    cli.init()
    config = tmp_path / "cleancut.toml"
    config.write_text(f'[sources.agent]\npath = "{workspace}"\nprofile = "conservative"\n')
    env = {"CLEANCUT_CONFIG": str(config)}
    cli.ok("backup", "agent", env=env | at(0))
    cli.ok("restore-test", env=env | at(0.5))
    res = cli.run("status", "--json", "--check", env=env | at(13))
    assert res.code == 3
    assert only(res.json())["reasons"] == ["last full older than 12h (13h00m old)"]
    assert only(res.json())["max_full_age_s"] == 12 * 3600
    # without the config file the repository's profile (standard, 24 h) applies
    assert cli.run("status", "--check", env=at(13)).code == 0
