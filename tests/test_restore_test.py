"""restore-test: a good chain passes; damaged data and a broken database fail, are
recorded in the repository, and make the next backup a full."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback

from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.repository.chain import snapshot_state
from cleancut.repository.pack import pack_name
from cleancut.repository.records import RESTORE_TEST, failed_snapshots, list_records
from cleancut.repository.repository import Repository
from cleancut.testing.sample import mutate_workspace
from cleancut.validation.formats import check_json as validate_json
from cleancut.validation.formats import check_jsonl as validate_jsonl
from cleancut.validation.formats import check_sqlite, has_sqlite_header
from cleancut.validation.rules import DEFAULT_RULES

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def validate_sqlite(path: Path) -> str | None:
    """As a restore test checks a database: read-write."""
    return check_sqlite(path, read_only=False)


def at(hours: float) -> dict[str, str]:
    """The injected clock: T0 plus some hours."""
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


def backup(cli: CLI, src: Path, hours: float) -> dict[str, Any]:
    return cli.ok("backup", str(src), "--name", "agent", "--json", env=at(hours)).json()


def records(cli: CLI) -> list[dict[str, Any]]:
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        return list_records(repo, RESTORE_TEST)
    finally:
        repo.close()


def corrupt_file_data(cli: CLI, snapshot_id: str, rel: str) -> None:
    """Flip one byte inside the stored blob of one file of a snapshot, in its data pack."""
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        node = snapshot_state(repo, repo.load_snapshot(snapshot_id))[rel]
        loc = repo.locate(bytes.fromhex(node.content[0]))
    finally:
        repo.close()
    pack = cli.repo / pack_name(loc.pack_id)
    data = bytearray(pack.read_bytes())
    data[loc.entry.offset + loc.entry.length // 2] ^= 0x01
    pack.write_bytes(bytes(data))


def test_a_good_chain_passes_every_step(repo_cli: CLI, workspace: Path, tmp_path: Path):
    full = backup(repo_cli, workspace, 0)
    mutate_workspace(workspace)
    inc = backup(repo_cli, workspace, 1)
    assert inc["kind"] == "incremental"
    sandbox = tmp_path / "sandbox"
    smoke = (
        'test "$PWD" = "$CLEANCUT_RESTORE_DIR" && test -f state/memory/main.sqlite '
        '&& test -z "$CLEANCUT_PASSWORD" && test "$CLEANCUT_RESTORE_SNAPSHOT" = '
        + inc["snapshot_id"]
    )
    res = repo_cli.run(
        "restore-test", "--json", "--sandbox", str(sandbox), "--smoke", smoke, env=at(2)
    )
    assert res.code == 0, res.err
    out = res.json()
    assert out["passed"] is True
    assert (out["snapshot"], out["kind"], out["seq"], out["chain"]) == (
        inc["snapshot_id"],
        "incremental",
        1,
        full["chain"],
    )
    assert set(out["steps"]) == {"restore", "verify", "validate", "smoke"}
    assert all(step["passed"] for step in out["steps"].values()), out["steps"]
    assert "from a chain of 2" in out["steps"]["restore"]["detail"]
    assert "1 SQLite" in out["steps"]["validate"]["detail"]
    assert out["files"] == inc["files"] and out["bytes"] == inc["bytes_total"]
    assert out["rto_s"] >= 0
    assert list(sandbox.iterdir()) == []  # the sandbox is removed afterwards

    (record,) = records(repo_cli)
    assert record["id"] == out["record_id"]
    assert record["time"] == iso(T0 + timedelta(hours=2))
    assert record["passed"] is True and record["snapshot"] == inc["snapshot_id"]
    assert record["name"] == "agent" and record["seq"] == 1
    assert set(record["steps"]["verify"]) >= {"passed", "detail", "duration_s"}

    # a passed test changes nothing for the policy
    mutate_workspace(workspace, seed=9)
    assert backup(repo_cli, workspace, 3)["kind"] == "incremental"


def test_text_output_and_keep(repo_cli: CLI, workspace: Path, tmp_path: Path):
    backup(repo_cli, workspace, 0)
    sandbox = tmp_path / "sandbox"
    res = repo_cli.run("restore-test", "--keep", "--sandbox", str(sandbox), env=at(1))
    assert res.code == 0, res.err
    assert "passed" in res.out and "RTO" in res.out and "sandbox kept at" in res.out
    (kept,) = sandbox.iterdir()
    assert (kept / "state" / "memory" / "main.sqlite").is_file()
    assert (kept / "workspace" / "CURRENT.md").is_symlink()


def test_a_corrupted_blob_fails_is_recorded_and_the_next_backup_is_a_full(
    repo_cli: CLI, workspace: Path
):
    backup(repo_cli, workspace, 0)
    mutate_workspace(workspace)
    inc = backup(repo_cli, workspace, 1)
    # a file the incremental inherits from the full: the chain replay must reach it
    corrupt_file_data(repo_cli, inc["snapshot_id"], "workspace/SOUL.md")

    res = repo_cli.run("restore-test", "--json", env=at(2))
    assert res.code == 4
    assert_no_traceback(res)
    assert f"restore test of snapshot {inc['snapshot_id'][:12]} failed: restore" in res.err
    out = res.json()
    assert out["passed"] is False
    assert out["steps"]["restore"]["passed"] is False
    assert "damaged" in out["steps"]["restore"]["detail"]
    assert out["steps"]["verify"]["passed"] is False  # the damaged file is not there
    assert any("missing" in p for p in out["steps"]["verify"]["problems"])

    (record,) = records(repo_cli)
    assert record["passed"] is False and record["snapshot"] == inc["snapshot_id"]
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        assert failed_snapshots(repo) == {inc["snapshot_id"]}
    finally:
        repo.close()

    mutate_workspace(workspace, seed=9)
    after = backup(repo_cli, workspace, 3)
    assert after["kind"] == "full" and after["seq"] == 0
    assert after["reason"] == f"parent {inc['snapshot_id'][:12]} failed verification"
    assert after["chain"] != inc["chain"]


def test_a_broken_sqlite_file_fails_validation(repo_cli: CLI, workspace: Path):
    db = workspace / "state" / "memory" / "main.sqlite"
    data = bytearray(db.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 8192] = b"\xa5garbage" * 1024  # two whole pages of the b-tree
    db.write_bytes(bytes(data))
    snap = backup(repo_cli, workspace, 0)

    res = repo_cli.run("restore-test", "--json", "--smoke", "true", env=at(1))
    assert res.code == 4
    assert_no_traceback(res)
    assert res.err.strip().endswith("failed: validate")
    steps = res.json()["steps"]
    assert steps["restore"]["passed"] and steps["verify"]["passed"]  # backed up faithfully
    assert steps["smoke"]["passed"]  # still run: the restore itself is complete
    assert not steps["validate"]["passed"]
    assert steps["validate"]["problems"][0].startswith("state/memory/main.sqlite: ")
    (record,) = records(repo_cli)
    assert record["passed"] is False and record["snapshot"] == snap["snapshot_id"]

    after = backup(repo_cli, workspace, 2)
    assert after["kind"] == "full"
    assert after["reason"] == f"parent {snap['snapshot_id'][:12]} failed verification"


def test_a_failing_or_hanging_smoke_command_fails(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    res = repo_cli.run("restore-test", "--json", "--smoke", "echo no agent; exit 3", env=at(1))
    assert res.code == 4 and res.err.strip().endswith("failed: smoke")
    detail = res.json()["steps"]["smoke"]["detail"]
    assert "exited 3" in detail and "no agent" in detail

    res = repo_cli.run(
        "restore-test", "--json", "--smoke", "sleep 60", "--timeout", "300ms", env=at(2)
    )
    assert res.code == 4
    assert "timed out after 0.3s" in res.json()["steps"]["smoke"]["detail"]


def test_picks_and_sources(repo_cli: CLI, workspace: Path, tmp_path: Path):
    full = backup(repo_cli, workspace, 0)
    mutate_workspace(workspace)
    inc = backup(repo_cli, workspace, 1)

    latest = repo_cli.ok("restore-test", "--json", env=at(2)).json()
    assert latest["snapshot"] == inc["snapshot_id"]
    untested = repo_cli.ok("restore-test", "--json", "--pick", "oldest-untested", env=at(3))
    assert untested.json()["snapshot"] == full["snapshot_id"]
    res = repo_cli.run("restore-test", "--pick", "oldest-untested", env=at(4))
    assert res.code == 2 and "every snapshot of agent has been restore-tested" in res.err
    picked = repo_cli.ok("restore-test", "--json", "--pick", "random", env=at(5)).json()
    assert picked["snapshot"] in {full["snapshot_id"], inc["snapshot_id"]}

    other = tmp_path / "other"
    other.mkdir()
    (other / "note.json").write_text("{}")
    repo_cli.ok("backup", str(other), "--name", "other", env=at(6))
    res = repo_cli.run("restore-test", env=at(7))
    assert res.code == 2 and "pass --source" in res.err
    assert_no_traceback(res)
    res = repo_cli.ok("restore-test", "--source", "other", "--json", env=at(7))
    assert res.json()["name"] == "other"
    res = repo_cli.run("restore-test", "--source", "nobody", env=at(7))
    assert res.code == 2 and "no snapshot of nobody" in res.err


def test_empty_repository(repo_cli: CLI):
    res = repo_cli.run("restore-test")
    assert res.code == 2 and "no snapshot to test" in res.err
    assert_no_traceback(res)


# --- the format validators on their own ---------------------------------------------


def test_jsonl_allows_a_torn_last_line_only(tmp_path: Path):
    f = tmp_path / "t.jsonl"
    f.write_bytes(b'{"a": 1}\n\n{"b": 2}\n{"torn": ')
    assert validate_jsonl(f) is None
    f.write_bytes(b'{"a": 1}\n{"torn": \n{"b": 2}\n')
    assert validate_jsonl(f) == "line 2 is not valid JSON"
    f.write_bytes(b'{"a": 1}\n' + b"\x00" * 16 + b"\n")
    assert validate_jsonl(f) == "NUL bytes in line 2"


def test_json_and_sqlite_validators(tmp_path: Path):
    j = tmp_path / "x.json"
    j.write_text('{"ok": true}')
    assert validate_json(j) is None
    j.write_text('{"ok": tr')
    problem = validate_json(j)
    assert problem is not None and problem.startswith("not valid JSON")

    db = tmp_path / "x.sqlite"
    db.write_bytes(b"this is not a database at all" * 200)
    problem = validate_sqlite(db)
    assert problem is not None and "not a database" in problem


@pytest.mark.parametrize("name", ["a.db", "b"])
def test_sqlite_is_recognised_by_its_header(tmp_path: Path, name: str):
    import sqlite3

    path = tmp_path / name
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert DEFAULT_RULES.kind_of(name, lambda: has_sqlite_header(path)) == "sqlite"
    assert validate_sqlite(path) is None


def _checked_database(path: Path, *, break_check: bool) -> None:
    """A WAL database whose CHECK constraint calls octet_length() (SQLite 3.43), as the
    OpenClaw gateway's do; made with apsw's SQLite, since Python's may be older."""
    import apsw

    con = apsw.Connection(str(path))
    con.execute("PRAGMA journal_mode=wal")
    con.execute("CREATE TABLE events(body TEXT CHECK (octet_length(body) < 16))")
    con.execute("INSERT INTO events VALUES ('fits')")
    if break_check:  # a row the constraint forbids, as damage or a bad writer leaves it
        con.execute("PRAGMA ignore_check_constraints=ON")
        con.execute("INSERT INTO events VALUES ('far longer than sixteen bytes')")
    con.close()


def test_databases_of_a_newer_sqlite_are_checked_with_a_current_one(tmp_path: Path):
    """Python's SQLite (3.40 here) failed every check of such a database with "unknown
    function: octet_length()"; and read-only it skips CHECK constraints altogether."""
    good, bad = tmp_path / "good.sqlite", tmp_path / "bad.sqlite"
    _checked_database(good, break_check=False)
    _checked_database(bad, break_check=True)
    assert validate_sqlite(good) is None
    problem = validate_sqlite(bad)
    assert problem is not None and "CHECK constraint failed in events" in problem
