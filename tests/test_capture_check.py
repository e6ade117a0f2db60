"""Capture checks: after the agent resumes, the changed JSON, JSONL and SQLite files of a
hot capture are checked and the verdicts travel in the snapshot record.

A torn file in a `quiesced` snapshot is a warning at backup time (exit 3) and in
`status`; a file that was never valid does not fail a restore test; a file that was
valid at capture and is not in the restored copy (or whose stored content is not
what was checked) does. The faults are real files with real bytes; the agent is the
hand-written minimal agent on a real socket.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback
from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.ops.restore_validate import validate_restored
from cleancut.ops.runner import run_backup
from cleancut.repository.chain import snapshot_state
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.verdicts import Verdicts
from cleancut.restorer.restore import Restorer
from cleancut.validation.capture import CaptureCheck, check_capture
from cleancut.validation.formats import jsonl_problem
from cleancut.validation.rules import DEFAULT_RULES, Rules

HERE = Path(__file__).parent
LONG_AGO = 1_600_000_000  # an mtime long past, as an unchanged workspace file has

# Files that were never valid: what a restore test must not hold against the restore.
NEVER_VALID = {
    "config.json": b'{\n  // JSON5, with a comment\n  name: "agent",\n}\n',
    "blob.json": bytes(range(256)) * 4,
    "logs/app.jsonl": b'{"ok": 1}\nstarting worker 3\n{"ok": 2}\n',
}


def open_repo(cli: CLI) -> Repository:
    return Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)


def write_tree(root: Path, files: dict[str, bytes], *, old: bool = True) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if old:
            os.utime(path, (LONG_AGO, LONG_AGO))


def checked_backup(
    repo: Repository, tree: Path, consistency: str = "quiesced", rules: Rules = DEFAULT_RULES
) -> tuple[CaptureCheck, Snapshot]:
    """What a hot backup does once the agent runs again: check the captured tree, then
    store it with the verdicts (src/cleancut/hot/orchestrator.py)."""
    found = check_capture(repo, "agent", tree, rules, [], consistency)
    options = BackupOptions(
        name="agent",
        consistency=consistency,
        validation=found.verdicts.to_json(),
        warnings=list(found.warnings),
    )
    return found, run_backup(repo, tree, options).snapshot


@pytest.fixture
def minimal_agent(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    workspace = tmp_path / "minimal"
    sock = tmp_path / "minimal.sock"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "minimal_agent.py"), "--socket", str(sock),
         "--workspace", str(workspace)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        yield workspace, f"unix:{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


def hot_backup(cli: CLI, workspace: Path, agent: str):  # type: ignore[no-untyped-def]
    return cli.run(
        "backup", str(workspace), "--name", "agent", "--agent", agent, "--json",
        "--quiesce-timeout", "10s", "--horizon", "1s",
    )


# --- at backup time ---------------------------------------------------------------------


def test_a_torn_file_in_a_quiesced_snapshot_is_flagged_at_backup(
    repo_cli: CLI, minimal_agent: tuple[Path, str]
) -> None:
    workspace, agent = minimal_agent
    notes = workspace / "notes.json"
    notes.write_text('{"facts": ["the sky is blue", "water is wet"]}')
    first = hot_backup(repo_cli, workspace, agent)
    assert first.code == 0, first.err
    assert json.loads(first.out)["validation"]["regressed"] == []

    notes.write_bytes(notes.read_bytes()[:20])  # torn: a write cut short
    torn = hot_backup(repo_cli, workspace, agent)
    assert torn.code == 3, torn.err
    assert_no_traceback(torn)  # one line, naming the file
    assert "notes.json was valid in the parent snapshot" in torn.err
    summary = json.loads(torn.out)
    assert summary["consistency"] == "quiesced"
    assert summary["snapshot_id"]  # the snapshot is kept
    assert summary["validation"]["regressed"] == ["notes.json"]
    assert summary["validation"]["invalid_files"] == ["notes.json"]

    health = repo_cli.run("status", "--json")
    (source,) = health.json()["sources"]
    assert source["torn_files"] == ["notes.json"]
    assert any("torn" in r and "notes.json" in r for r in source["reasons"]), source["reasons"]
    assert source["state"] == "warn"

    # Left as it is, the file is not "newly torn" again: no warning, still in status.
    again = hot_backup(repo_cli, workspace, agent)
    assert again.code == 0, again.err
    assert json.loads(again.out)["validation"]["invalid_files"] == ["notes.json"]
    (source,) = repo_cli.run("status", "--json").json()["sources"]
    assert source["torn_files"] == ["notes.json"]

    notes.write_text('{"facts": []}')  # mended: the warning goes
    mended = hot_backup(repo_cli, workspace, agent)
    assert mended.code == 0, mended.err
    (source,) = repo_cli.run("status", "--json").json()["sources"]
    assert source["torn_files"] == []


def test_only_changed_files_are_checked_the_rest_inherit(repo_cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "staged"
    files = {f"memory/m{i:02}.json": json.dumps({"i": i}).encode() for i in range(20)}
    write_tree(tree, files | NEVER_VALID)
    time.sleep(0.1)  # past the memo's racy window: a file written within a tick is re-checked
    repo = open_repo(repo_cli)
    try:
        first, _ = checked_backup(repo, tree)
        assert (first.verdicts.checked, first.verdicts.inherited) == (23, 0)
        assert sorted(first.verdicts.files) == sorted(NEVER_VALID)
        assert first.warnings == []  # never valid is not torn

        write_tree(tree, {"memory/m03.json": b'{"i": 3, "more": true}'}, old=False)
        second, snap = checked_backup(repo, tree)
        assert (second.verdicts.checked, second.verdicts.inherited) == (1, 22)
        assert sorted(second.verdicts.files) == sorted(NEVER_VALID)  # inherited verdicts
        assert snap.validation == second.verdicts.to_json()  # travels in the record
    finally:
        repo.close()


def test_a_torn_file_in_another_capture_is_recorded_not_warned(
    repo_cli: CLI, tmp_path: Path
) -> None:
    tree = tmp_path / "staged"
    write_tree(tree, {"state.json": b'{"turn": 1}'})
    repo = open_repo(repo_cli)
    try:
        checked_backup(repo, tree, "frozen")
        write_tree(tree, {"state.json": b'{"turn": '}, old=False)
        found, _ = checked_backup(repo, tree, "frozen")
        assert found.verdicts.regressed == ["state.json"]  # crash-consistent: expected
        assert found.warnings == []
    finally:
        repo.close()


# --- at restore-test time -----------------------------------------------------------------


def test_a_never_valid_file_does_not_fail_a_restore_test(repo_cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "agent"
    write_tree(src, NEVER_VALID | {"good.json": b"{}"})
    repo_cli.ok("backup", str(src), "--name", "agent", "--pre", "true", "--post", "true")
    res = repo_cli.run("restore-test", "--source", "agent", "--json")
    assert res.code == 0, res.out
    validate = res.json()["steps"]["validate"]
    assert validate["passed"] is True
    assert "3 invalid at capture already" in validate["detail"]
    assert sorted(line.split(":")[0] for line in validate["invalid_at_capture"]) == sorted(
        NEVER_VALID
    )

    # The same files in a snapshot without a capture check (a plain backup, or one
    # written before capture checks) are judged on their own, as before.
    repo_cli.ok("backup", str(src), "--name", "plain")
    res = repo_cli.run("restore-test", "--source", "plain", "--json")
    assert res.code == 4
    assert res.json()["steps"]["validate"]["problems_total"] == 3


def test_a_file_changed_after_its_capture_check_fails_the_restore_test(
    repo_cli: CLI, tmp_path: Path
) -> None:
    tree = tmp_path / "staged"
    write_tree(tree, NEVER_VALID | {"memory.json": b'{"facts": ["a", "b"]}'})
    repo = open_repo(repo_cli)
    try:
        found = check_capture(repo, "agent", tree, DEFAULT_RULES, [], "quiesced")
        # The checked tree changes before it is stored: the stored content is not what
        # was judged. One file was valid, one was already invalid (and is still).
        write_tree(tree, {"memory.json": b'{"facts": ["a", "b"', "blob.json": b"\x00" * 9})
        options = BackupOptions(
            name="agent", consistency="quiesced", validation=found.verdicts.to_json()
        )
        run_backup(repo, tree, options)
    finally:
        repo.close()
    res = repo_cli.run("restore-test", "--json")
    assert res.code == 4
    validate = res.json()["steps"]["validate"]
    problems = "\n".join(validate["problems"])
    assert "memory.json: not valid JSON" in problems and "(valid at capture)" in problems
    assert "blob.json: not valid JSON" in problems  # other content than the one judged
    assert validate["invalid_at_capture_total"] == 2  # config.json and logs/app.jsonl


def test_a_restored_copy_corrupted_after_the_restore_fails(repo_cli: CLI, tmp_path: Path) -> None:
    """The validate step on a restored tree whose valid database and JSON were damaged
    after the restore wrote them: both fail; the never-valid files still do not."""
    tree = tmp_path / "staged"
    write_tree(tree, NEVER_VALID | {"memory.json": b'{"facts": []}'})
    db = tree / "agent.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(f"row {i} " * 40,) for i in range(200)])
    con.commit()
    con.close()
    repo = open_repo(repo_cli)
    try:
        _, snap = checked_backup(repo, tree)
        snap = repo.load_snapshot(snap.id)
        target = tmp_path / "restored"
        Restorer(repo, snap, target).run()
        state = snapshot_state(repo, snap)
    finally:
        repo.close()
    verdicts = Verdicts.from_json(snap.validation)
    assert verdicts is not None
    problems, _, known = validate_restored(state, target, DEFAULT_RULES, verdicts)
    assert problems == [] and len(known) == 3

    (target / "memory.json").write_bytes(b'{"facts": [')
    with (target / "agent.sqlite").open("r+b") as f:
        f.seek(4096)  # the table's root page: its b-tree page header
        f.write(b"\xff" * 64)
    problems, _, known = validate_restored(state, target, DEFAULT_RULES, verdicts)
    assert [p.split(":")[0] for p in problems] == ["agent.sqlite", "memory.json"]
    assert all(p.endswith("(valid at capture)") for p in problems)
    assert len(known) == 3


def test_validate_rules_choose_what_is_checked_and_as_what(
    repo_cli: CLI, tmp_path: Path
) -> None:
    src = tmp_path / "agent"
    write_tree(src, {"cache/junk.json": b"not json", "notes.txt": b"{}", "x.log": b"x\n"})
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'[sources.agent]\npath = "{src}"\npre = "true"\n'
        'validate = { "cache/*" = "none", "*.log" = "jsonl", "*.txt" = "json" }\n'
    )
    shown = repo_cli.ok("config", "show", "--config", str(config), "-s", "agent", "--json")
    rules = shown.json()["source"]["validate"]
    assert rules[0] == {"pattern": "cache/*", "format": "none", "origin": "config file"}
    assert {"pattern": "*.json", "format": "json", "origin": "default"} in rules
    text = repo_cli.ok("config", "show", "--config", str(config), "-s", "agent").out
    assert "cache/* = none, *.log = jsonl, *.txt = json  (config file), then the defaults" in text

    backup = repo_cli.ok("backup", "agent", "--config", str(config), "--json").json()
    # x.log's only line has a newline and is not JSON; cache/junk.json is not checked.
    assert backup["validation"]["invalid_files"] == ["x.log"]

    config.write_text(f'[sources.agent]\npath = "{src}"\nvalidate = {{ "*.db" = "sqlit" }}\n')
    res = repo_cli.run("config", "show", "--config", str(config))
    assert res.code == 2 and "unknown format 'sqlit'" in res.err
    assert_no_traceback(res)


def test_a_record_field_of_another_version_is_not_trusted() -> None:
    raw = {"version": 2, "rules": "", "files": {"a.json": {"kind": "json"}}}
    assert Verdicts.from_json(raw) is None
    assert Verdicts.from_json(None) is None
    assert Verdicts.from_json({"version": 1, "files": {"a.json": {"kind": 1}}}) is None


# --- the JSONL rule -----------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6,
)
_not_json = st.sampled_from([b"plain text", b"{", b'{"a": 1', b"[1,]", b"\x00\x00", b"\xff"])


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(_json_values, max_size=6),
    blanks=st.lists(st.integers(min_value=0, max_value=6), max_size=3),
    tail=st.one_of(st.none(), _not_json, _json_values.map(lambda v: json.dumps(v).encode())),
    bad=st.one_of(st.none(), st.tuples(st.integers(min_value=0, max_value=6), _not_json)),
)
def test_jsonl_every_terminated_line_parses_the_unterminated_last_may_be_anything(
    lines: list[object], blanks: list[int], tail: bytes | None, bad: tuple[int, bytes] | None
) -> None:
    body = [json.dumps(v).encode() + b"\n" for v in lines]
    for at in blanks:
        body.insert(min(at, len(body)), b"  \n")
    if bad is not None:
        body.insert(min(bad[0], len(body)), bad[1] + b"\n")
    data = b"".join(body) + (tail or b"")
    problem = jsonl_problem(io.BytesIO(data))
    if bad is None:
        assert problem is None, data
    else:
        assert problem is not None, data
        number = data[: data.index(bad[1] + b"\n")].count(b"\n") + 1
        assert problem in (f"line {number} is not valid JSON", f"NUL bytes in line {number}")


def test_jsonl_rule_examples() -> None:
    assert jsonl_problem(io.BytesIO(b'{"a": 1}\n{"torn": ')) is None
    assert jsonl_problem(io.BytesIO(b'{"a": 1}\n{"torn": \n')) == "line 2 is not valid JSON"
    assert jsonl_problem(io.BytesIO(b"")) is None
    assert jsonl_problem(io.BytesIO(b"\n\n")) is None


def test_a_tree_without_checkable_files_checks_nothing(tmp_path: Path, repo_cli: CLI) -> None:
    tree = tmp_path / "staged"
    write_tree(tree, {"README": b"hello", "notes.txt": b"{"})
    repo = open_repo(repo_cli)
    try:
        found = check_capture(repo, "agent", tree, DEFAULT_RULES, [], "quiesced")
    finally:
        repo.close()
    assert (found.verdicts.checked, found.verdicts.invalid, found.warnings) == (0, 0, [])
