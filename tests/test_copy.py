"""copy: chains arrive whole in another repository, re-encrypted under its own keys."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback, tree_state

from cleancut.errors import UsageError
from cleancut.settings.config_file import DEFAULT_REPLICATION_INTERVAL, parse_config

PASSWORD_B = "a different passphrase for the replica"
PASSWORD_C = "and a third one"


def at(minutes: int) -> dict[str, str]:
    return {"CLEANCUT_NOW": f"2026-11-20T{minutes // 60:02d}:{minutes % 60:02d}:00Z"}


def replica(tmp_path: Path, name: str, password: str, *init_args: str) -> CLI:
    """Another repository, initialised with its own passphrase (and so its own keys)."""
    cli = CLI(tmp_path / name, tmp_path / "cache")
    cli.env["CLEANCUT_PASSWORD"] = password
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", *init_args)
    return cli


def copy(src: CLI, dest: CLI, *args: str, env: dict[str, str] | None = None) -> dict:
    res = src.ok(
        "copy",
        "--to",
        str(dest.repo),
        "--json",
        *args,
        env={"CLEANCUT_TO_PASSWORD": dest.env["CLEANCUT_PASSWORD"]} | (env or {}),
    )
    return res.json()


def backup(cli: CLI, src: Path, minutes: int, name: str = "agent") -> dict:
    return cli.ok("backup", str(src), "--name", name, "--json", env=at(minutes)).json()


def snapshot_ids(cli: CLI) -> list[str]:
    return [s["id"] for s in cli.ok("snapshots", "--json").json()]


def restored(cli: CLI, snapshot_id: str, target: Path) -> dict:
    cli.ok("restore", snapshot_id, "--target", str(target))
    return tree_state(target)


def chain_of_four(cli: CLI, workspace: Path) -> list[dict]:
    """A full and 3 incrementals, with additions, changes, deletions and a rename."""
    snaps = [backup(cli, workspace, 0)]
    memory = workspace / "workspace" / "MEMORY.md"
    for i in range(1, 4):
        memory.write_text(memory.read_text() + f"turn {i}\n")
        (workspace / f"new{i}.txt").write_text(str(i) * 5000)
        if i == 2:
            os.unlink(workspace / "workspace" / "SOUL.md")
            shutil.rmtree(workspace / "state" / "cron")
        if i == 3:
            (workspace / "new1.txt").rename(workspace / "renamed.txt")
        snaps.append(backup(cli, workspace, 10 * i))
    assert [s["kind"] for s in snaps] == ["full"] + ["incremental"] * 3
    return snaps


def test_a_chain_copies_whole_and_restores_identically(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    snaps = chain_of_four(repo_cli, workspace)
    b = replica(tmp_path, "b", PASSWORD_B)

    first = copy(repo_cli, b)
    assert first["snapshots_copied"] == 4 and first["snapshots_skipped"] == 0
    assert first["blobs_transferred"] > 0 and first["bytes_uploaded"] > 0
    copies = {c["source_id"]: c["dest_id"] for c in first["copied"]}
    assert [c["seq"] for c in first["copied"]] == [0, 1, 2, 3]  # ancestors first

    a_snaps = {s["id"]: s for s in repo_cli.ok("snapshots", "--json").json()}
    b_snaps = {s["id"]: s for s in b.ok("snapshots", "--json").json()}
    chains = set()
    for snap in snaps:
        original, copied = a_snaps[snap["snapshot_id"]], b_snaps[copies[snap["snapshot_id"]]]
        assert copied["id"] != original["id"]  # another repository's keys: other ids
        assert copied["copied_from"]["snapshot"] == original["id"]
        for key in ("time", "name", "host", "paths", "kind", "seq", "consistency", "tags"):
            assert copied[key] == original[key], key
        chains.add(copied["chain"])
        src_tree = restored(repo_cli, original["id"], tmp_path / f"a{snap['seq']}")
        assert restored(b, copied["id"], tmp_path / f"b{snap['seq']}") == src_tree
    assert len(chains) == 1
    b.ok("check", "--read-data")

    again = b.ok("snapshots", "--json").json()
    res = repo_cli.ok(
        "copy", "--to", str(b.repo), env={"CLEANCUT_TO_PASSWORD": PASSWORD_B}
    )  # the text report
    assert "0 snapshots copied" in res.out and "0 bytes transferred" in res.out
    assert b.ok("snapshots", "--json").json() == again

    # And back out of the replica into a third repository, with a third set of keys.
    c = replica(tmp_path, "c", PASSWORD_C)
    back = copy(b, c)
    assert back["snapshots_copied"] == 4
    last = back["copied"][-1]["dest_id"]
    assert restored(c, last, tmp_path / "c3") == tree_state(tmp_path / "a3")
    # B's snapshots are copies of A's: copying A to C now finds them all there.
    assert copy(repo_cli, c)["snapshots_copied"] == 0


def test_filters_bring_the_ancestors_along(repo_cli: CLI, workspace: Path, tmp_path: Path):
    snaps = chain_of_four(repo_cli, workspace)
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    (other / "notes" / "a.md").write_text("another agent\n")
    backup(repo_cli, other, 5, name="other")

    b = replica(tmp_path, "b", PASSWORD_B)
    last = copy(repo_cli, b, "--since", "2026-11-20T00:30:00Z")  # only the last incremental
    assert [(c["name"], c["seq"]) for c in last["copied"]] == [("agent", s) for s in range(4)]
    assert last["copied"][-1]["source_id"] == snaps[-1]["snapshot_id"]
    restored(b, last["copied"][-1]["dest_id"], tmp_path / "b3")

    only = copy(repo_cli, b, "--source", "other")
    assert [c["name"] for c in only["copied"]] == ["other"]
    assert only["snapshots_skipped"] == 0

    res = repo_cli.run(
        "copy", "--to", str(b.repo), "--source", "nobody", env={"CLEANCUT_TO_PASSWORD": PASSWORD_B}
    )
    assert res.code == 2 and "no snapshot of nobody" in res.err
    assert_no_traceback(res)
    assert len(snapshot_ids(b)) == 5


def test_a_broken_source_chain_copies_nothing(repo_cli: CLI, workspace: Path, tmp_path: Path):
    snaps = chain_of_four(repo_cli, workspace)
    (repo_cli.repo / "snapshots" / snaps[1]["snapshot_id"]).unlink()
    b = replica(tmp_path, "b", PASSWORD_B)
    before = sorted(str(p.relative_to(b.repo)) for p in b.repo.rglob("*"))

    res = repo_cli.run("copy", "--to", str(b.repo), env={"CLEANCUT_TO_PASSWORD": PASSWORD_B})
    assert res.code == 6, res.err
    assert f"chain {snaps[0]['chain'][:12]} broken at seq 1" in res.err
    assert "nothing was copied" in res.err
    assert_no_traceback(res)
    assert sorted(str(p.relative_to(b.repo)) for p in b.repo.rglob("*")) == before


def test_a_killed_copy_finishes_when_run_again(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "big"
    (src / "blobs").mkdir(parents=True)
    for i in range(12):
        (src / "blobs" / f"{i:02d}.bin").write_bytes(os.urandom(4 << 20))
    backup(repo_cli, src, 0)
    for i in range(1, 3):
        (src / "blobs" / f"more{i}.bin").write_bytes(os.urandom(4 << 20))
        backup(repo_cli, src, 10 * i)
    b = replica(tmp_path, "b", PASSWORD_B, "--pack-size", "1MiB")  # a pack lands early

    proc = subprocess.Popen(
        repo_cli.command("copy", "--to", str(b.repo)),
        env=repo_cli.env | {"CLEANCUT_TO_PASSWORD": PASSWORD_B},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not _packs(b.repo) and proc.poll() is None:
        assert time.monotonic() < deadline, "the copy never started uploading"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(snapshot_ids(b)) < 3  # killed midway: not everything committed
    b.ok("check")  # whatever is visible is whole; unreferenced packs are only reclaimable

    committed = len(snapshot_ids(b))
    resumed = copy(repo_cli, b)
    assert resumed["snapshots_copied"] == 3 - committed
    assert len(snapshot_ids(b)) == 3
    b.ok("check", "--read-data")
    assert restored(b, "latest", tmp_path / "restored") == tree_state(src)


def _packs(repo: Path) -> list[Path]:
    return [p for p in (repo / "data").rglob("*") if p.is_file() and not p.name.endswith(".tmp")]


def test_tick_replicates_once_per_interval(repo_cli: CLI, workspace: Path, tmp_path: Path):
    b = replica(tmp_path, "b", PASSWORD_B)
    pw_a, pw_b = tmp_path / "pw-a", tmp_path / "pw-b"
    pw_a.write_text(PASSWORD + "\n")
    pw_b.write_text(PASSWORD_B + "\n")
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'repository = "{repo_cli.repo}"\npassword_file = "{pw_a}"\n'
        f'[sources.agent]\npath = "{workspace}"\n'
        f'[replication]\nto = "{b.repo}"\ninterval = "1h"\npassword_file = "pw-b"\n'
    )
    env = {"CLEANCUT_CONFIG": str(config)}

    def tick(minutes: int) -> list[tuple[str, bool]]:
        res = repo_cli.run("tick", "--json", env=env | at(minutes))
        assert res.code == 0, res.err
        return [(a["what"], a["ok"]) for a in res.json()]

    assert tick(0) == [("backup", True), ("restore-test", True), ("copy", True)]
    assert tick(0) == []  # nothing due: not copied twice in a row
    assert tick(5) == [("backup", True)]  # a backup is due, the next copy is not
    assert len(snapshot_ids(b)) == 1
    assert tick(60) == [("backup", True), ("copy", True)]
    assert len(snapshot_ids(b)) == 3

    config.write_text(config.read_text() + 'tox = "typo"\n')
    res = repo_cli.run("tick", env=env | at(120))
    assert res.code == 2 and f"{config}: replication.tox: unknown key" in res.err
    assert_no_traceback(res)


def test_the_replication_table_is_checked(tmp_path: Path):
    path = tmp_path / "cleancut.toml"
    parsed = parse_config({"replication": {"to": "replica"}}, path)
    assert parsed.replication is not None
    assert parsed.replication.to == str(tmp_path / "replica")  # relative to the file
    assert parsed.replication.interval == DEFAULT_REPLICATION_INTERVAL
    assert parse_config({"replication": {"to": "s3://b/p"}}, path).replication.to == "s3://b/p"
    assert parse_config({}, path).replication is None
    for table, message in (
        ({}, "replication: missing 'to'"),
        ({"to": "x", "interval": "soon"}, "replication.interval"),
        ({"to": "x", "interval": 0}, "replication.interval"),
        ({"to": ""}, "replication.to"),
        ({"to": "x", "password_command": "pass"}, "replication.password_command: unknown key"),
    ):
        with pytest.raises(UsageError, match=message):
            parse_config({"replication": table}, path)
