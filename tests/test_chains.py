"""Delta chains: the policy that picks full or incremental, and the links restore trusts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import CLI, PASSWORD, assert_no_traceback, tree_state

from cleancut.backend.local import LocalBackend
from cleancut.repository.records import RESTORE_TEST, write_record
from cleancut.repository.repository import Repository

T0 = "2026-11-20T00:00:00Z"


def at(hours: float) -> dict[str, str]:
    """The injected clock: T0 plus some hours."""
    seconds = int(hours * 3600)
    return {"CLEANCUT_NOW": f"2026-11-20T{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:00Z"}


def at_day(day: int, hour: int = 0) -> dict[str, str]:
    return {"CLEANCUT_NOW": f"2026-11-{20 + day:02d}T{hour:02d}:00:00Z"}


def backup(cli: CLI, src: Path, env: dict[str, str], *args: str) -> dict:
    return cli.ok("backup", str(src), "--name", "agent", "--json", *args, env=env).json()


def touch(src: Path, i: int) -> None:
    note = src / "workspace" / "MEMORY.md"
    note.write_text(note.read_text() + f"line {i}\n")


def test_every_policy_reason(repo_cli: CLI, workspace: Path):
    first = backup(repo_cli, workspace, at(0))
    assert (first["kind"], first["seq"], first["reason"]) == (
        "full",
        0,
        "no chain yet for this source",
    )
    touch(workspace, 1)
    inc = backup(repo_cli, workspace, at(1))
    assert inc["kind"] == "incremental" and inc["seq"] == 1 and inc["chain"] == first["chain"]
    assert "at seq 0" in inc["reason"]

    forced = backup(repo_cli, workspace, at(2), "--full")
    assert forced["kind"] == "full" and forced["reason"] == "requested with --full"
    assert forced["chain"] != first["chain"]

    # standard profile: a full at most 24 h old
    aged = backup(repo_cli, workspace, at_day(1, 3))
    assert aged["kind"] == "full" and aged["reason"].startswith("last full is 25h")
    # conservative for one run: 12 h
    inc = backup(repo_cli, workspace, at_day(1, 10), "--profile", "conservative")
    assert inc["kind"] == "incremental"
    cons = backup(repo_cli, workspace, at_day(1, 16), "--profile", "conservative")
    assert cons["kind"] == "full" and "max 12h" in cons["reason"]


def test_the_72h_cap_holds_even_for_permissive(repo_cli: CLI, workspace: Path):
    full = backup(repo_cli, workspace, at(0), "--profile", "permissive")
    for day in (1, 2):
        touch(workspace, day)
        step = backup(repo_cli, workspace, at_day(day), "--profile", "permissive")
        assert step["kind"] == "incremental" and step["chain"] == full["chain"]
    capped = backup(repo_cli, workspace, at_day(3), "--profile", "permissive")
    assert capped["kind"] == "full"
    assert "72h cap" in capped["reason"]


def test_a_parent_that_failed_verification_is_never_built_on(repo_cli: CLI, workspace: Path):
    full = backup(repo_cli, workspace, at(0))
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    write_record(
        repo,
        {
            "type": RESTORE_TEST,
            "time": "2026-11-20T00:30:00Z",
            "snapshot": full["snapshot_id"],
            "passed": False,
        },
    )
    repo.close()
    nxt = backup(repo_cli, workspace, at(1))
    assert nxt["kind"] == "full" and "failed verification" in nxt["reason"]


def test_restore_replays_the_chain(repo_cli: CLI, workspace: Path, tmp_path: Path):
    states = []
    snaps = []
    for i in range(5):
        if i:
            touch(workspace, i)
            (workspace / f"new{i}.txt").write_text(str(i) * 100)
        if i == 3:
            os.unlink(workspace / "workspace" / "SOUL.md")
            (workspace / "state" / "cron").rename(workspace / "state" / "cron-moved")
        snaps.append(backup(repo_cli, workspace, at(i)))
        states.append(tree_state(workspace))
    assert [s["kind"] for s in snaps] == ["full"] + ["incremental"] * 4
    for i, snap in enumerate(snaps):
        target = tmp_path / f"r{i}"
        repo_cli.ok("restore", snap["snapshot_id"], "--target", str(target))
        assert tree_state(target) == states[i], f"seq {i}"
    target = tmp_path / "at"
    repo_cli.ok("restore", "--at", "2026-11-20T02:30:00Z", "--target", str(target))
    assert tree_state(target) == states[2]
    res = repo_cli.run("restore", "--at", "2026-11-19T00:00:00Z", "--target", str(tmp_path / "x"))
    assert res.code == 2 and "no snapshot" in res.err


def test_an_incremental_costs_its_change_not_the_workspace(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "big"
    for d in range(100):
        (src / f"d{d:03d}").mkdir(parents=True)
        for f in range(100):
            (src / f"d{d:03d}" / f"f{f:03d}.json").write_text(f'{{"d": {d}, "f": {f}}}\n')
    old = time.time() - 3600
    for p in src.rglob("*"):
        os.utime(p, (old, old))
    backup(repo_cli, src, at(0))
    (src / "d042" / "f042.json").write_text('{"changed": true}\n')
    os.utime(src / "d042" / "f042.json", (old, old))  # same mtime: caught by size and ctime
    inc = backup(repo_cli, src, at(1))
    assert inc["kind"] == "incremental" and inc["files_changed"] == 1
    assert inc["files"] == 10_000
    record = repo_cli.repo / "snapshots" / inc["snapshot_id"]
    assert record.stat().st_size < 4096
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    snap = repo.load_snapshot(inc["snapshot_id"])
    delta = repo.cache.find_blob(bytes.fromhex(snap.delta))
    repo.close()
    assert delta is not None and delta.entry.raw_length < 4096
    assert inc["bytes_added"] < 8192  # new pack bytes: the delta and the changed file


def _forge(repo_cli: CLI, snapshot_id: str, **changes: object) -> str:
    """Replace a record by one with altered chain fields, as a key holder could."""
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    snap = repo.load_snapshot(snapshot_id)
    for key, value in changes.items():
        setattr(snap, key, value)
    new_id = repo.write_snapshot(snap)
    repo.backend.delete("snapshots/" + snapshot_id)
    repo.close()
    return new_id


def _chain_of_three(repo_cli: CLI, workspace: Path) -> list[dict]:
    snaps = []
    for i in range(3):
        touch(workspace, i)
        snaps.append(backup(repo_cli, workspace, at(i)))
    return snaps


def test_a_missing_link_is_named_on_restore_and_check(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    snaps = _chain_of_three(repo_cli, workspace)
    (repo_cli.repo / "snapshots" / snaps[1]["snapshot_id"]).unlink()
    res = repo_cli.run("restore", snaps[2]["snapshot_id"], "--target", str(tmp_path / "t"))
    assert res.code == 6
    assert f"chain {snaps[0]['chain'][:12]} broken at seq 1" in res.err
    assert_no_traceback(res)
    assert not (tmp_path / "t").exists()
    res = repo_cli.run("check")
    assert res.code == 4 and "broken at seq 1" in res.err
    assert snaps[2]["snapshot_id"][:12] in res.err  # the dependent is named damaged
    # The full still restores.
    repo_cli.ok("restore", snaps[0]["snapshot_id"], "--target", str(tmp_path / "f"))


def test_an_altered_link_is_named(repo_cli: CLI, workspace: Path, tmp_path: Path):
    snaps = _chain_of_three(repo_cli, workspace)
    forged = _forge(repo_cli, snaps[2]["snapshot_id"], parent_hash="0" * 64)
    res = repo_cli.run("restore", forged, "--target", str(tmp_path / "t"))
    assert res.code == 6 and "broken at seq 1" in res.err and "hash" in res.err
    assert "broken at seq 1" in repo_cli.run("check").err


def test_a_sequence_gap_is_named(repo_cli: CLI, workspace: Path, tmp_path: Path):
    snaps = _chain_of_three(repo_cli, workspace)
    forged = _forge(repo_cli, snaps[2]["snapshot_id"], seq=3)
    res = repo_cli.run("restore", forged, "--target", str(tmp_path / "t"))
    assert res.code == 6 and "broken at seq 2" in res.err and "gap" in res.err


def test_a_broken_chain_makes_the_next_backup_a_full(repo_cli: CLI, workspace: Path):
    snaps = _chain_of_three(repo_cli, workspace)
    (repo_cli.repo / "snapshots" / snaps[1]["snapshot_id"]).unlink()
    nxt = repo_cli.run("backup", str(workspace), "--name", "agent", "--json", env=at(4))
    assert nxt.code == 3  # written, with a warning that the parent was unusable
    assert nxt.json()["kind"] == "full"
    assert "parent failed verification" in nxt.json()["reason"]


def test_a_configured_source_needs_no_long_command_line(cli: CLI, workspace: Path, tmp_path: Path):
    cli.init()
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'repository = "{cli.repo}"\n'
        f'password_file = "{pw}"\n'
        "[sources.agent]\n"
        f'path = "{workspace}"\n'
        'exclude = ["*.sqlite"]\n'
        'tags = ["prod"]\n'
        "[sources.agent.overrides]\n"
        'max_full_age = "2h"\n'
    )
    env = {"CLEANCUT_REPO": "", "CLEANCUT_PASSWORD": "", "CLEANCUT_CONFIG": str(config)}
    env_t0 = env | at(0)
    first = cli.run("backup", "agent", "--json", env=env_t0)
    assert first.code == 0, first.err
    listing = cli.ok("snapshots", "--json", env=env).json()
    assert listing[0]["name"] == "agent" and listing[0]["tags"] == ["prod"]
    names = {e["path"] for e in cli.ok("ls", "latest", "--json", env=env).json()}
    assert "state/memory/main.sqlite" not in names
    second = cli.run("backup", "agent", "--json", env=env | at(1)).json()
    assert second["kind"] == "incremental"
    third = cli.run("backup", "agent", "--json", env=env | at(3)).json()
    assert third["kind"] == "full" and "max 2h" in third["reason"]


def test_a_failed_ancestor_ends_the_chain(repo_cli: CLI, workspace: Path):
    full = backup(repo_cli, workspace, at(0))
    touch(workspace, 1)
    inc = backup(repo_cli, workspace, at(1))
    assert inc["kind"] == "incremental"
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    write_record(
        repo,
        {
            "type": RESTORE_TEST,
            "time": "2026-11-20T01:30:00Z",
            "snapshot": full["snapshot_id"],
            "passed": False,
        },
    )
    repo.close()
    nxt = backup(repo_cli, workspace, at(2))
    assert nxt["kind"] == "full" and full["snapshot_id"][:12] in nxt["reason"]
    assert nxt["files_unchanged"] == 0  # nothing is trusted from the failed chain


def test_a_delta_entry_whose_name_leaves_its_path_is_refused(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    from cleancut.archiver.saver import BlobSaver
    from cleancut.repository.pack import DELTA
    from cleancut.repository.state import Delta
    from cleancut.repository.tree import SYMLINK, Node

    full = backup(repo_cli, workspace, at(0))
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    parent = repo.load_snapshot(full["snapshot_id"])
    evil = Node("../../escaped", SYMLINK, 0o777, 1, target="/etc")
    raw = Delta({"fine": evil}).encode()
    saver = BlobSaver(repo)
    delta_id = repo.keys.blob_id(raw)
    saver.resolve(saver.submit(DELTA, raw, delta_id))
    saver.finish()
    saver.close()
    parent.kind, parent.seq, parent.delta, parent.tree = "incremental", 1, delta_id.hex(), ""
    parent.parent, parent.parent_hash = full["snapshot_id"], parent.record_hash
    forged = repo.write_snapshot(parent)
    repo.close()
    target = tmp_path / "a" / "b" / "t"
    res = repo_cli.run("restore", forged, "--target", str(target))
    assert res.code == 5 and "does not match its path" in res.err
    assert not (tmp_path / "a" / "escaped").exists() and not (target / "fine").exists()
    assert (target / "workspace" / "MEMORY.md").exists()  # the rest is restored


def test_a_missing_config_file_is_an_error_and_profile_keeps_overrides(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    res = repo_cli.run("snapshots", "--config", str(tmp_path / "nope.toml"))
    assert res.code == 2 and "nope.toml" in res.err
    config = tmp_path / "cleancut.toml"
    config.write_text('[overrides]\nmax_full_age = "6h"\n')
    env = {"CLEANCUT_CONFIG": str(config)}
    backup(repo_cli, workspace, env | at(0))
    touch(workspace, 1)
    # --profile replaces the profile, not the file's overrides: 7 h > 6 h means a full.
    nxt = backup(repo_cli, workspace, env | at(7), "--profile", "standard")
    assert nxt["kind"] == "full" and "max 6h" in nxt["reason"]


def test_the_next_backup_uses_the_cached_state_only_when_it_matches(repo_cli: CLI, workspace: Path):
    from cleancut.repository.chain import snapshot_state
    from cleancut.repository.statecache import load_state

    backup(repo_cli, workspace, at(0))
    touch(workspace, 1)
    inc = backup(repo_cli, workspace, at(1))
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    snap = repo.load_snapshot(inc["snapshot_id"])
    cached = load_state(repo.cache.path.parent, "agent", snap.id)
    replayed = snapshot_state(repo, snap)
    assert cached is not None
    assert {p: n.to_json() for p, n in cached.items() if n.type != "dir"} == {
        p: n.to_json() for p, n in replayed.items() if n.type != "dir"
    }
    assert set(cached) == set(replayed)
    assert load_state(repo.cache.path.parent, "agent", "0" * 64) is None  # another snapshot
    repo.close()
    # A damaged copy only costs a replay.
    (state_file,) = list(repo_cli.cache.rglob("state-*.zst"))
    state_file.write_bytes(b"garbage")
    touch(workspace, 2)
    nxt = backup(repo_cli, workspace, at(2))
    assert nxt["kind"] == "incremental" and nxt["files_changed"] >= 1
