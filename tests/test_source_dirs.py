"""Sources of several named directories captured in one cut (decision 0006).

A real cleancut process against real directories: the snapshot holds one directory
per name and records each original path; restore puts them under the target, or
one of them back into a place of its own; ls, diff, check and chains work on it as on
any snapshot; a hot backup stages every directory inside the one pause; and a
repository written before any of this (tests/fixtures/repo-single-dir) still works.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from conftest import CLI, assert_no_traceback, tree_state

from cleancut.backend.local import LocalBackend
from cleancut.repository.repository import Repository

FIXTURE = Path(__file__).parent / "fixtures" / "repo-single-dir"


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    state, work = tmp_path / "claw" / "state", tmp_path / "srv" / "ws"
    (state / "agents" / "main").mkdir(parents=True)
    (state / "tmp").mkdir()
    (state / "agents" / "main" / "sessions.json").write_text('{"s": 1}')
    (state / "tmp" / "gateway.lock").write_text("pid 1")
    work.mkdir(parents=True)
    (work / "MEMORY.md").write_text("remember the milk\n")
    hour_ago = time.time() - 3600  # older than the racy window: unchanged files are skipped
    for path in [*state.rglob("*"), *work.rglob("*")]:
        os.utime(path, (hour_ago, hour_ago))
    return state, work


def _backup(cli: CLI, state: Path, work: Path, *extra: str) -> dict[str, object]:
    res = cli.ok("backup", "--dir", f"state={state}", "--dir", f"workspace={work}",
                 "--name", "claw", "--json", *extra)
    return res.json()


def test_several_directories_are_one_snapshot_restored_under_their_names(
    repo_cli: CLI, tmp_path: Path
) -> None:
    state, work = _dirs(tmp_path)
    first = _backup(repo_cli, state, work, "--exclude", "state/tmp")
    listed = [e["path"] for e in repo_cli.ok("ls", "latest", "--json").json()]
    assert listed == ["state", "state/agents", "state/agents/main",
                      "state/agents/main/sessions.json", "workspace", "workspace/MEMORY.md"]
    (snap,) = repo_cli.ok("snapshots", "--json").json()
    assert snap["paths"] == [str(state), str(work)]

    time.sleep(2.1)  # past the racy window: the change below is a change, not a maybe
    (work / "MEMORY.md").write_text("remember the milk and the eggs\n")
    (work / "new.md").write_text("new\n")
    second = _backup(repo_cli, state, work, "--exclude", "state/tmp")
    assert (first["kind"], second["kind"]) == ("full", "incremental")
    assert second["files_unchanged"] == 1  # the state dir's file, not read again

    diff = repo_cli.ok("diff", str(first["snapshot_id"]), str(second["snapshot_id"])).out
    assert "M workspace/MEMORY.md" in diff and "+ workspace/new.md" in diff
    assert "state/" not in diff.replace("state/tmp", "")
    assert "no errors" in repo_cli.ok("check", "--read-data").out

    target = tmp_path / "restored"
    out = repo_cli.ok("restore", "latest", "--target", str(target)).out
    assert f"state/ (backed up from {state})" in out
    assert sorted(p.name for p in target.iterdir()) == ["state", "workspace"]
    shutil.rmtree(state / "tmp")  # excluded: the rest must come back exactly
    assert tree_state(target / "state") == tree_state(state)
    assert tree_state(target / "workspace") == tree_state(work)


def test_restore_dir_puts_one_directory_back_into_a_place_of_its_own(
    repo_cli: CLI, tmp_path: Path
) -> None:
    state, work = _dirs(tmp_path)
    work.chmod(0o750)
    _backup(repo_cli, state, work)
    back = tmp_path / "ws.restored"
    repo_cli.ok("restore", "latest", "--dir", "workspace", "--target", str(back))
    assert tree_state(back) == tree_state(work)
    assert back.stat().st_mode & 0o777 == 0o750  # the directory's own mode, on the target

    res = repo_cli.run("restore", "latest", "--dir", "memory", "--target", str(tmp_path / "x"))
    assert res.code == 2 and "its directories: state, workspace" in res.err
    assert_no_traceback(res)


def test_a_config_source_names_its_directories(repo_cli: CLI, tmp_path: Path) -> None:
    state, work = _dirs(tmp_path)
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'[sources.claw]\npaths = {{ state = "{state}", workspace = "{work}" }}\n'
        'exclude = ["state/tmp"]\n'
    )
    res = repo_cli.ok("backup", "claw", "--json", "--config", str(config)).json()
    assert res["name"] == "claw" and res["files"] == 2
    shown = repo_cli.ok("config", "show", "--source", "claw", "--config", str(config)).out
    assert f"state = {state}" in shown and f"workspace = {work}" in shown


BAD_DIR_LISTS = [
    (["--dir", "a={a}", "--dir", "b={a}/inner", "--name", "n"], "inside a"),
    (["--dir", "a={a}", "--dir", "a={b}", "--name", "n"], "given twice"),
    (["--dir", "../a={a}", "--name", "n"], "use letters"),
    (["--dir", "a={a}", "--dir", "b={b}"], "needs --name"),
    (["{a}", "--dir", "b={b}", "--name", "n"], "one"),
    (["--dir", "a", "--name", "n"], "NAME=PATH"),
]


def test_bad_directory_lists_are_usage_errors(repo_cli: CLI, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "inner").mkdir(parents=True)
    b.mkdir()
    for args, message in BAD_DIR_LISTS:
        res = repo_cli.run("backup", *[x.format(a=a, b=b) for x in args])
        assert res.code == 2 and message in res.err, (args, res.err)
        assert_no_traceback(res)


def test_bad_paths_tables_in_the_config_file_name_the_key(repo_cli: CLI, tmp_path: Path) -> None:
    config = tmp_path / "cleancut.toml"
    for table, message in [
        (f'path = "{tmp_path}"\npaths = {{ a = "{tmp_path}" }}', "not both"),
        ("paths = {}", "sources.claw.paths"),
        ('paths = { "a b" = "/x" }', "use letters"),
    ]:
        config.write_text(f"[sources.claw]\n{table}\n")
        res = repo_cli.run("config", "show", "--config", str(config))
        assert res.code == 2 and message in res.err, res.err
        assert_no_traceback(res)


def test_a_hot_backup_stages_every_directory_inside_the_one_pause(
    repo_cli: CLI, tmp_path: Path
) -> None:
    """The pre hook starts the pause, the post hook ends it: whatever the snapshot holds
    of each directory was read between them. Both directories say 'paused' in the
    snapshot, though both said 'running' before the pause (when prepare staged them)
    and again after it."""
    state, work = _dirs(tmp_path)
    for d in (state, work):
        (d / "phase").write_text("running\n")
    flip = "for d in {s} {w}; do printf '%s\\n' {word} > $d/phase; done"
    pre = flip.format(s=state, w=work, word="paused")
    post = flip.format(s=state, w=work, word="running-again")
    res = repo_cli.ok(
        "backup", "--dir", f"state={state}", "--dir", f"workspace={work}", "--name", "claw",
        "--exclude", "state/tmp", "--pre", pre, "--post", post, "--json",
        "--staging", str(tmp_path / "staging"),
    ).json()
    assert res["consistency"] == "hooked"
    target = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(target))
    assert (target / "state" / "phase").read_text() == "paused\n"
    assert (target / "workspace" / "phase").read_text() == "paused\n"
    assert not (target / "state" / "tmp").exists()  # the exclude reached the staging
    assert (state / "phase").read_text() == "running-again\n"
    assert sorted(p.name for p in (tmp_path / "staging" / "dirs").iterdir()) == [
        "state", "workspace"]


def test_a_repository_written_before_several_directories_still_works(
    cli: CLI, tmp_path: Path
) -> None:
    """A repository from commit 3a2f461: its one-directory snapshots list, check, restore
    and extend as before, and a new one-directory record carries no `dirs` field."""
    repo = tmp_path / "old-repo"
    shutil.copytree(FIXTURE, repo)
    old = CLI(repo, tmp_path / "cache")
    old.env["CLEANCUT_PASSWORD"] = "old-format"
    snaps = old.ok("snapshots", "--json").json()
    assert [(s["name"], s["kind"]) for s in snaps] == [("old", "full"), ("old", "incremental")]
    assert "no errors" in old.ok("check", "--read-data").out
    target = tmp_path / "restored"
    old.ok("restore", "latest", "--target", str(target))
    assert (target / "a.txt").read_text() == "hello\n"
    assert (target / "sub" / "b.txt").read_text() == "changed\n"

    src = tmp_path / "src"
    shutil.copytree(target, src)
    (src / "c.txt").write_text("new\n")
    res = old.ok("backup", str(src), "--name", "old", "--json").json()
    assert res["kind"] == "incremental"  # the old chain goes on
    opened = Repository.open(LocalBackend(repo), "old-format", tmp_path / "cache")
    try:
        record = opened.load_snapshot(res["snapshot_id"]).to_record()
        first = opened.load_snapshot(snaps[0]["id"])
    finally:
        opened.close()
    assert first.dirs is None and first.paths == ["/tmp/oc-old/src"]
    assert "dirs" not in record and record["paths"] == [str(src)]
