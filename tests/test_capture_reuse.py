"""The capture check does not redo work: a grown JSONL file is read from its tail, and a
staged database's integrity_check is run once (issue 13).

A transcript that grows by a few lines between backups is validated from the line its
new bytes begin in, when the last check found it valid and staging only appended to it
(same staged inode, larger); a rewritten one (new inode) is read whole. The stage's own
verification of a staged database and the capture check share one `integrity_check`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD

from cleancut.archiver.backup import BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.ops.runner import run_backup
from cleancut.repository.repository import Repository
from cleancut.validation.capture import CaptureCheck, SqliteResults, check_capture
from cleancut.validation.formats import check_jsonl_from
from cleancut.validation.rules import DEFAULT_RULES

LINE = b'{"role": "user", "text": "hello"}\n'
HERE = Path(__file__).parent


@pytest.fixture
def minimal_agent(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """tests/minimal_agent.py serving its workspace (as in test_capture_check.py)."""
    workspace = tmp_path / "minimal"
    sock = tmp_path / "minimal.sock"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "minimal_agent.py"), "--socket", str(sock),
         "--workspace", str(workspace)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        yield workspace, f"unix:{sock}"
    finally:
        proc.terminate()
        proc.wait(10)


def _check(cli: CLI, tree: Path, sqlite_checked: SqliteResults | None = None) -> CaptureCheck:
    """What a hot backup does once the agent runs again: check the captured tree, then
    store it with the verdicts (the stored snapshot is the next check's parent)."""
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        found = check_capture(
            repo, "agent", tree, DEFAULT_RULES, [], "quiesced", sqlite_checked
        )
        options = BackupOptions(
            name="agent", consistency="quiesced", validation=found.verdicts.to_json()
        )
        run_backup(repo, tree, options)
        return found
    finally:
        repo.close()


def _settle() -> None:
    """Past the memo's racy window (fsio/racy.py, 50 ms for nanosecond timestamps): a
    verdict on a file written within it is not trusted, which would make the tail rule
    fall back to a whole read (still correct, but not what these tests look at)."""
    time.sleep(0.1)


def test_a_grown_jsonl_is_checked_from_its_tail(repo_cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "staged"
    tree.mkdir()
    log = tree / "transcript.jsonl"
    log.write_bytes(LINE * 1000)
    _settle()
    first = _check(repo_cli, tree)
    assert first.verdicts.checked == 1 and first.tail_checked == []

    with open(log, "ab") as f:  # staging appends the new tail in place: same inode
        f.write(LINE * 3)
    _settle()
    grown = _check(repo_cli, tree)
    assert grown.tail_checked == ["transcript.jsonl"]
    assert grown.verdicts.invalid == 0
    assert grown.record()["tail_checked"] == 1

    prefix = log.stat().st_size
    with open(log, "ab") as f:
        f.write(b"not json at all\n")
    torn = _check(repo_cli, tree)
    assert torn.tail_checked == ["transcript.jsonl"]
    assert torn.verdicts.regressed == ["transcript.jsonl"]
    (problem,) = [v.problem for v in torn.verdicts.files.values()]
    assert problem == f"line 1 is not valid JSON, counting from byte {prefix}"
    assert torn.warnings and "transcript.jsonl was valid in the parent" in torn.warnings[0]


def test_an_unterminated_last_line_is_checked_again_once_completed(
    repo_cli: CLI, tmp_path: Path
) -> None:
    tree = tmp_path / "staged"
    tree.mkdir()
    log = tree / "ledger.jsonl"
    log.write_bytes(LINE * 10 + b'{"role": "assis')  # a torn append: allowed at the end
    _settle()
    assert _check(repo_cli, tree).verdicts.invalid == 0
    with open(log, "ab") as f:  # completed into something that is not JSON
        f.write(b"tant\n" + LINE)
    _settle()
    found = _check(repo_cli, tree)
    assert found.tail_checked == ["ledger.jsonl"]
    assert found.verdicts.regressed == ["ledger.jsonl"]  # the completed line was read


def test_a_rewritten_jsonl_is_read_whole(repo_cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "staged"
    tree.mkdir()
    log = tree / "transcript.jsonl"
    log.write_bytes(LINE * 10)
    _settle()
    _check(repo_cli, tree)
    # A new file under the name (as staging writes a whole copy): a bad line in what
    # was the prefix is found, so the prefix was not taken on trust.
    tmp = tree / "t.tmp"
    tmp.write_bytes(b"garbage\n" + LINE * 20)
    os.replace(tmp, log)
    _settle()
    found = _check(repo_cli, tree)
    assert found.tail_checked == []
    assert found.verdicts.regressed == ["transcript.jsonl"]


def test_check_jsonl_from_starts_at_the_line_holding_the_boundary(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": 3}\n')
    assert check_jsonl_from(path, 9) == (None, 9)  # just after a newline
    assert check_jsonl_from(path, 12) == (None, 9)  # inside the second line: from it
    assert check_jsonl_from(path, 5) == (None, 0)  # inside the first line: whole file
    path.write_bytes(b"x" * 200_000 + b'\n{"a": 1}\n')  # the newline is far back
    assert check_jsonl_from(path, 200_005) == (None, 200_001)


def test_a_staged_database_is_checked_once(repo_cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "staged"
    tree.mkdir()
    db = tree / "memory.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    st = db.stat()
    meta = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    # The stage's verification found a problem with exactly this file: the capture check
    # takes its word rather than run integrity_check again (the file itself is fine, so
    # a second run would have found nothing).
    shared = _check(repo_cli, tree, {str(db): (meta, ["*** in database main ***"])})
    assert shared.sqlite_shared == 1
    (problem,) = [v.problem for v in shared.verdicts.files.values()]
    assert problem == "integrity_check: *** in database main ***"
    # A result for other metadata (the file changed since) is not used. (Another tree:
    # in this one the memo now holds the verdict for the file as it is.)
    tree2 = tmp_path / "staged2"
    tree2.mkdir()
    db2 = tree2 / "memory.sqlite"
    db2.write_bytes(db.read_bytes())
    st = db2.stat()
    other = (st.st_size + 1, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    again = _check(repo_cli, tree2, {str(db2): (other, ["*** in database main ***"])})
    assert again.sqlite_shared == 0 and again.verdicts.invalid == 0


def test_a_hot_backup_records_the_shared_check(
    repo_cli: CLI, tmp_path: Path, minimal_agent: tuple[Path, str]
) -> None:
    workspace, agent = minimal_agent
    con = sqlite3.connect(workspace / "memory.sqlite")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    (workspace / "transcript.jsonl").write_bytes(LINE * 50)
    cmd = ("backup", str(workspace), "--name", "agent", "--agent", agent, "--json",
           "--quiesce-timeout", "10s", "--horizon", "1s")  # fmt: skip
    first = repo_cli.run(*cmd)
    assert first.code == 0, first.err
    record = json.loads(first.out)["capture"]["validation"]
    assert record["sqlite_shared"] == 1  # staged and verified by the stage, not re-run
