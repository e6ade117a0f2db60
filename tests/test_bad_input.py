"""Operator mistakes and odd states: one clear line, the right exit code, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, Result, assert_no_traceback, tree_state


@pytest.mark.parametrize(
    "args",
    [
        ["--kdf-memory", "8KiB"],
        ["--kdf-iterations", "0"],
        ["--chunk-min", "64", "--chunk-avg", "64", "--chunk-max", "64"],
        ["--chunk-min", "4MiB", "--chunk-avg", "1MiB"],
        ["--pack-size", "10KiB"],
        ["--chunk-avg", "lots"],
    ],
)
def test_init_refuses_bad_settings(cli: CLI, args: list[str]):
    res = cli.run("init", *args)
    assert res.code == 2, res.err
    assert "Traceback" not in res.err
    assert not (cli.repo / "config").exists()


def test_a_fresh_cache_opened_by_several_processes_at_once(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    for _ in range(5):
        shutil.rmtree(repo_cli.cache)
        procs = [
            subprocess.Popen(
                repo_cli.command("snapshots", "--json"),
                env=repo_cli.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err


def test_non_utf8_password_file(cli: CLI, tmp_path: Path, workspace: Path):
    pw = tmp_path / "pw"
    pw.write_bytes(b"caf\xe9 \xff\n")
    env = {"CLEANCUT_PASSWORD": "ignored"}
    assert cli.run("init", "--password-file", str(pw), "--kdf-memory", "8MiB", env=env).code == 0
    assert cli.run("backup", str(workspace), "--password-file", str(pw), env=env).code == 0
    assert cli.run("snapshots", env={"CLEANCUT_PASSWORD": "café \xff"}).code == 1


def test_restore_goes_on_past_a_directory_in_the_way(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    repo_cli.ok("backup", str(workspace))
    target = tmp_path / "t"
    (target / "workspace" / "MEMORY.md").mkdir(parents=True)
    res = repo_cli.run("restore", "latest", "--target", str(target))
    assert res.code == 1
    assert "workspace/MEMORY.md: cannot write" in res.err
    (target / "workspace" / "MEMORY.md").rmdir()
    left = tree_state(target)
    expected = tree_state(workspace)
    assert set(left) == set(expected) - {"workspace/MEMORY.md"}
    assert not [p for p in target.rglob("*cleancut-restore*")]
    assert left["workspace/SOUL.md"] == expected["workspace/SOUL.md"]
    assert left["workspace/CURRENT.md"] == expected["workspace/CURRENT.md"]  # symlinks too


def test_paths_that_are_not_in_the_snapshot(repo_cli: CLI, workspace: Path, tmp_path: Path):
    repo_cli.ok("backup", str(workspace))
    res = repo_cli.run("ls", "latest", "no/such/path")
    assert res.code == 21 and "no/such/path" in res.err  # PATH_NOT_FOUND
    assert_no_traceback(res)
    res = repo_cli.run("restore", "latest", "--target", str(tmp_path / "t"), "--include", "nope")
    assert res.code == 21 and "'nope'" in res.err
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def test_a_record_damaged_after_it_was_cached_is_refused(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    sid = repo_cli.ok("backup", str(workspace), "--json").json()["snapshot_id"]
    repo_cli.ok("snapshots")  # now in the cache
    record = repo_cli.repo / "snapshots" / sid
    record.write_bytes(record.read_bytes()[:-1] + b"\x00")
    res = repo_cli.run("restore", sid[:12], "--target", str(tmp_path / "t"))
    assert res.code == 4 and "does not match its name" in res.err
    assert_no_traceback(res)


def test_repair_index_names_packs_it_cannot_read(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    for segment in (repo_cli.repo / "index").iterdir():
        segment.unlink()
    pack = max(
        (p for p in (repo_cli.repo / "data").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    res = repo_cli.run("repair", "index")
    assert res.code == 4
    assert pack.name[:12] in res.err and "could not be indexed" in res.err


def _hostile(kind: str, where: Path) -> Path:
    """A path a user might set a password or config file to that is no small regular file."""
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "fifo":
        os.mkfifo(where)  # no writer ever comes: a blocking open would never return
    elif kind == "directory":
        where.mkdir()
    elif kind == "huge":
        with where.open("wb") as f:
            f.truncate(3 << 30)  # sparse: 3 GiB that cost no disk
    return where


HOSTILE = ["dev-zero", "fifo", "directory", "huge"]
REFUSED = {
    "dev-zero": "is a character device, not a regular file",
    "fifo": "is a fifo, not a regular file",
    "directory": "is a directory, not a regular file",
    "huge": "larger than",
}


def _refused(res: Result, kind: str, label: str) -> None:
    assert res.code == 2, res.err
    if kind == "directory" and "Usage:" in res.err:
        # click's own check on a path option: its usage error, naming the directory.
        assert "Traceback" not in res.err and "is a directory" in res.err, res.err
        return
    assert_no_traceback(res)
    assert label in res.err and REFUSED[kind] in res.err, res.err


def test_a_password_or_config_file_that_is_not_a_small_regular_file_is_refused(
    repo_cli: CLI, tmp_path: Path
):
    to = tmp_path / "to"
    repo_cli.ok("init", "--repo", str(to), "--kdf-memory", "8MiB", "--kdf-iterations", "1")
    no_password = {k: v for k, v in repo_cli.env.items() if k != "CLEANCUT_PASSWORD"}
    for kind in HOSTILE:
        bad = str(_hostile(kind, tmp_path / kind))
        # The timeouts guard against a hang; they assert nothing about speed.
        res = repo_cli.run("snapshots", "--password-file", bad, timeout=60)
        _refused(res, kind, "password file")
        res = repo_cli.run("key", "add", "--new-password-file", bad, timeout=60)
        _refused(res, kind, "password file")
        res = repo_cli.run("copy", "--to", str(to), "--to-password-file", bad, timeout=60)
        _refused(res, kind, "password file")
        res = repo_cli.run("snapshots", env={"CLEANCUT_CONFIG": bad}, timeout=60)
        _refused(res, kind, "config file")
        config = tmp_path / f"{kind}.toml"
        config.write_text(
            f'password_file = "{bad}"\n[replication]\nto = "{to}"\npassword_file = "{bad}"\n'
        )
        for args in (["snapshots"], ["copy"]):
            proc = subprocess.run(
                repo_cli.command(*args),
                env=no_password | {"CLEANCUT_CONFIG": str(config)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            _refused(Result(proc.returncode, proc.stdout, proc.stderr), kind, "password file")


@pytest.mark.parametrize("opener", ["a = ", "a = [", "a = {b = "])
def test_a_config_nested_too_deeply_is_one_line(repo_cli: CLI, tmp_path: Path, opener: str):
    config = tmp_path / "deep.toml"
    if opener == "a = ":
        config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif opener == "a = [":
        config.write_text("a = [" + "{b = [" * 50_000 + "]}" * 50_000 + "]\n")
    else:
        config.write_text("a = {b = " + "{c = " * 100_000 + "1" + "}" * 100_001 + "\n")
    res = repo_cli.run("snapshots", env={"CLEANCUT_CONFIG": str(config)}, timeout=60)
    assert res.code == 2, res.err
    assert_no_traceback(res)
    assert f"{config}: not valid TOML" in res.err


@pytest.mark.parametrize("command", ["yes", "cat /dev/zero"])
def test_a_password_command_that_prints_without_end_is_refused(repo_cli: CLI, command: str):
    res = repo_cli.run("snapshots", "--password-command", command, timeout=60)
    assert res.code == 1, res.err
    assert_no_traceback(res)
    assert "password command printed more than 64 KiB" in res.err


def test_restore_test_of_json_nested_too_deeply_is_a_failed_check_not_a_crash(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (src / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n{}\n")
    repo_cli.ok("backup", str(src), "--name", "deep")
    res = repo_cli.run("restore-test", "--json")
    assert "Traceback" not in res.err, res.err
    assert res.code != 0
    detail = json.loads(res.out)["steps"]["validate"]["detail"]
    assert "deep.json: nested too deeply to check" in detail, detail
    assert "deep.jsonl: line 1 is nested too deeply to check" in detail, detail
