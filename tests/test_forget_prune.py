"""Retention (forget), garbage collection (prune) and the prune lock.

Time moves with the injected clock (CLEANCUT_NOW), never with sleeps: the safety
margin is crossed by running the next command at a later CLEANCUT_NOW.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback, tree_state
from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.errors import CleancutError, RepositoryLocked, UsageError
from cleancut.prune.retention import KeepRules, plan_forget
from cleancut.repository.crypto import content_hash
from cleancut.repository.locks import LOCK_NAME, HeldLock
from cleancut.repository.pack import DATA, PackBuilder, pack_name
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = 3600


def at(hours: float) -> dict[str, str]:
    """The injected clock: T0 plus some hours."""
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


# --- plan_forget, without a repository ---------------------------------------------


def snap(
    sid: str,
    hours: float,
    kind: str = "full",
    parent: str | None = None,
    seq: int = 0,
    name: str = "agent",
    chain: str = "c",
) -> Snapshot:
    return Snapshot(
        time=iso(T0 + timedelta(hours=hours)),
        name=name,
        host="h",
        user="u",
        paths=["/x"],
        tree="00" * 32,
        kind=kind,
        parent=parent,
        chain=chain,
        seq=seq,
        id=sid,
    )


def kept(verdicts: list) -> set[str]:
    return {v.snapshot.id for v in verdicts if v.keep}


def test_calendar_rules_keep_the_newest_full_of_each_bucket():
    # A full every 6 hours for 40 days.
    snaps = [snap(f"f{i:03d}", i * 6, chain=f"c{i}") for i in range(160)]
    now = T0 + timedelta(days=41)
    daily = plan_forget(snaps, KeepRules(daily=3), now, 72 * HOUR)
    # Newest of each of the last 3 days: 18:00 of days 39, 38, 37.
    assert kept(daily) == {"f159", "f155", "f151"}
    reasons = {v.snapshot.id: v.reasons for v in daily}
    assert reasons["f159"] == ["keep-daily 2026-12-29"]
    assert reasons["f000"] == ["no keep rule matches"]
    hourly = plan_forget(snaps, KeepRules(hourly=2), now, 72 * HOUR)
    assert kept(hourly) == {"f159", "f158"}
    weekly = plan_forget(snaps, KeepRules(weekly=2), now, 72 * HOUR)
    # 2026-12-29 is in ISO week 53; the week before ends Sunday 2026-12-27 18:00.
    assert kept(weekly) == {"f159", "f151"}
    assert "keep-weekly 2026-W53" in {r for v in weekly for r in v.reasons}
    monthly = plan_forget(snaps, KeepRules(monthly=2), now, 72 * HOUR)
    assert kept(monthly) == {"f159", "f043"}  # 2026-11-30 18:00 is f043
    last = plan_forget(snaps, KeepRules(last=2), now, 72 * HOUR)
    assert kept(last) == {"f159", "f158"}
    within = plan_forget(snaps, KeepRules(within=12 * HOUR), now, 72 * HOUR)
    assert kept(within) == {"f159", "f158", "f157"}  # counted from the newest, not from now


def test_incrementals_follow_retention_and_keep_their_ancestors():
    snaps = [
        snap("full1", 0, chain="a"),
        snap("inc1", 1, "incremental", "full1", 1, chain="a"),
        snap("inc2", 2, "incremental", "inc1", 2, chain="a"),
        snap("full2", 30, chain="b"),
        snap("inc3", 31, "incremental", "full2", 1, chain="b"),
        snap("inc4", 32, "incremental", "inc3", 2, chain="b"),
    ]
    # 80 h after T0 with a 72 h retention: only chain b's incrementals are young.
    verdicts = plan_forget(snaps, KeepRules(monthly=1), T0 + timedelta(hours=80), 72 * HOUR)
    by_id = {v.snapshot.id: v for v in verdicts}
    assert kept(verdicts) == {"full2", "inc3", "inc4"}
    assert by_id["inc4"].reasons == ["incremental younger than 72h"]
    assert "beyond the 72h retention" in by_id["inc2"].reasons[0]
    # keep-last 1 keeps the newest, an old incremental, and so its whole chain.
    later = T0 + timedelta(hours=200)
    verdicts = plan_forget(snaps, KeepRules(last=1), later, 72 * HOUR)
    by_id = {v.snapshot.id: v for v in verdicts}
    assert kept(verdicts) == {"inc4", "inc3", "full2"}
    assert by_id["inc3"].reasons == ["needed by inc4"]
    assert by_id["full2"].reasons == ["needed by inc3"]
    # A rule on fulls alone lets an old chain's tail go, never its middle; the newest
    # snapshot of the source and its chain stay whatever the rules (issue 10, item 6).
    verdicts = plan_forget(snaps, KeepRules(daily=1), later, 72 * HOUR)
    by_id = {v.snapshot.id: v for v in verdicts}
    assert kept(verdicts) == {"full2", "inc3", "inc4"}
    assert by_id["inc4"].reasons == ["newest of its source"]


def test_no_rule_is_refused():
    with pytest.raises(UsageError, match="no keep rule"):
        plan_forget([snap("a", 0)], KeepRules(), T0, 72 * HOUR)
    with pytest.raises(UsageError):
        KeepRules(last=-1)


@st.composite
def histories(draw: st.DrawFn) -> list[Snapshot]:
    """Sources with chains: every source starts with a full; each step is a new full
    or an incremental on the current chain, some minutes to days after the last."""
    snaps: list[Snapshot] = []
    for n in range(draw(st.integers(1, 3))):
        hours = 0.0
        parent: Snapshot | None = None
        for i in range(draw(st.integers(1, 25))):
            hours += draw(st.sampled_from([0.1, 0.5, 1, 3, 7, 24, 50, 200]))
            full = parent is None or draw(st.booleans())
            sid = f"s{n}-{i:03d}"
            if full:
                current = snap(sid, hours, name=f"src{n}", chain=sid)
            else:
                assert parent is not None
                current = snap(
                    sid, hours, "incremental", parent.id, parent.seq + 1, f"src{n}", parent.chain
                )
            snaps.append(current)
            parent = current
    return snaps


rules_strategy = st.builds(
    KeepRules,
    last=st.integers(0, 4),
    hourly=st.integers(0, 4),
    daily=st.integers(0, 4),
    weekly=st.integers(0, 3),
    monthly=st.integers(0, 3),
    within=st.sampled_from([0.0, 600.0, HOUR, 2 * 86400.0]),
).filter(lambda r: not r.empty)


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    rules=rules_strategy,
    later=st.floats(0, 400),
    retention=st.sampled_from([300.0, 24 * HOUR, 72 * HOUR, 168 * HOUR]),
)
def test_no_kept_snapshot_ever_loses_an_ancestor(history, rules, later, retention):
    newest_time = max(s.time for s in history)
    now = datetime.fromisoformat(newest_time.replace("Z", "+00:00")) + timedelta(hours=later)
    verdicts = plan_forget(history, rules, now, retention)
    assert len(verdicts) == len(history)
    keep = kept(verdicts)
    by_id = {s.id: s for s in history}
    for v in verdicts:
        assert v.reasons, v
        if not v.keep:
            continue
        current = v.snapshot
        while not current.is_full:
            assert current.parent in keep, f"{current.id} kept, its parent {current.parent} not"
            current = by_id[current.parent]
    if rules.last >= 1:
        for name in {s.name for s in history}:
            newest = max((s for s in history if s.name == name), key=lambda s: (s.time, s.seq))
            assert newest.id in keep


# --- the command line -------------------------------------------------------------


def backup(cli: CLI, src: Path, hours: float, *args: str, name: str = "agent") -> dict:
    return cli.ok("backup", str(src), "--name", name, "--json", *args, env=at(hours)).json()


def prune(cli: CLI, hours: float, *args: str) -> dict:
    return cli.ok("prune", "--json", *args, env=at(hours)).json()


def data_bytes(cli: CLI) -> int:
    return sum(p.stat().st_size for p in (cli.repo / "data").rglob("*") if p.is_file())


def touch(src: Path, i: int) -> None:
    note = src / "workspace" / "MEMORY.md"
    note.write_text(note.read_text() + f"line {i}\n")


def check_clean(cli: CLI) -> None:
    res = cli.run("check", "--read-data")
    assert res.code == 0, res.err
    assert "error" not in res.err


def restore_equals(cli: CLI, snapshot_id: str, expected: dict, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    cli.ok("restore", snapshot_id, "--target", str(target))
    assert tree_state(target) == expected


def forget_a_big_file(cli: CLI, src: Path, content: bytes, workspace: Path) -> dict:
    """Snapshot a source holding only a big file, then one without it (the workspace
    instead), and forget the first: the big file's packs then hold nothing needed."""
    src.mkdir()
    (src / "big.bin").write_bytes(content)
    backup(cli, src, 0)
    (src / "big.bin").unlink()
    shutil.copytree(workspace, src, symlinks=True, dirs_exist_ok=True)
    last = backup(cli, src, 0.1, "--full")
    cli.ok("forget", "--keep-last", "1", env=at(0.2))
    return last


def test_forget_without_a_rule_is_refused(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    res = repo_cli.run("forget")
    assert res.code == 2 and "no keep rule" in res.err
    assert_no_traceback(res)
    res = repo_cli.run("forget", "--keep-within", "soon")
    assert res.code == 2
    assert_no_traceback(res)
    assert len(list((repo_cli.repo / "snapshots").iterdir())) == 1


def test_forget_never_breaks_a_kept_snapshot(repo_cli: CLI, workspace: Path, tmp_path: Path):
    plan = [  # (hours, extra args); standard profile: a full at most 24 h old
        (0, ()),
        (1, ()),
        (2, ()),
        (27, ()),  # full: the last one is 27 h old
        (28, ()),
        (100, ()),  # full
        (101, ()),
        (101.5, ()),
    ]
    states: dict[str, dict] = {}
    snaps = []
    for i, (hours, args) in enumerate(plan):
        touch(workspace, i)
        (workspace / f"file{i}.bin").write_bytes(random.Random(i).randbytes(50_000))
        out = backup(repo_cli, workspace, hours, *args)
        states[out["snapshot_id"]] = tree_state(workspace)
        snaps.append(out)
    assert [s["kind"] for s in snaps] == ["full", "incremental", "incremental"] + [
        "full",
        "incremental",
        "full",
        "incremental",
        "incremental",
    ]
    ids = [s["snapshot_id"] for s in snaps]
    # Conservative profile: incrementals are kept 24 h; at 126 h none of them is young.
    forget_args = ("--keep-last", "1", "--keep-daily", "2", "--profile", "conservative")
    dry = repo_cli.ok("forget", *forget_args, "--dry-run", "--json", env=at(126)).json()
    verdicts = {v["id"]: v for v in dry["snapshots"]}
    assert {sid for sid, v in verdicts.items() if v["keep"]} == {ids[7], ids[6], ids[5], ids[3]}
    assert verdicts[ids[7]]["reasons"] == ["keep-last (1 of 1)"]
    assert verdicts[ids[6]]["reasons"] == [f"needed by {ids[7][:12]}"]
    assert "keep-daily 2026-11-24" in verdicts[ids[5]]["reasons"]
    assert "keep-daily 2026-11-21" in verdicts[ids[3]]["reasons"]
    assert "beyond the 24h retention" in verdicts[ids[4]]["reasons"][0]
    assert len(list((repo_cli.repo / "snapshots").iterdir())) == 8  # a dry run deletes nothing
    text = repo_cli.ok("forget", *forget_args, "--dry-run", env=at(126)).out
    assert f"forget  {ids[0][:12]}" in text and "would forget 4 snapshot(s)" in text

    done = repo_cli.ok("forget", *forget_args, "--json", env=at(126)).json()
    assert sorted(done["forgotten"]) == sorted([ids[0], ids[1], ids[2], ids[4]])
    before = data_bytes(repo_cli)
    prune(repo_cli, 127)  # marks: forget noted the segments at 126 h
    after = prune(repo_cli, 128)  # sweeps
    assert after["deleted"]["count"] > 0
    assert data_bytes(repo_cli) < before
    check_clean(repo_cli)
    for i in (3, 5, 6, 7):
        restore_equals(repo_cli, ids[i], states[ids[i]], tmp_path / f"r{i}")


def test_prune_reclaims_space_after_forget(repo_cli: CLI, workspace: Path, tmp_path: Path):
    src = tmp_path / "src"
    last = forget_a_big_file(repo_cli, src, random.Random(1).randbytes(4 << 20), workspace)
    expected = tree_state(src)
    full_size = data_bytes(repo_cli)
    assert full_size > 4 << 20

    early = prune(repo_cli, 0.2 + 59 / 60)  # within the margin of what forget saw
    assert early["marked"]["count"] == 0 and early["deleted"]["count"] == 0
    assert early["too_new"]["bytes"] > 4 << 20

    # Phase 1, past the margin: marked, out of the index, still on disk.
    marked = prune(repo_cli, 2)
    assert marked["marked"]["bytes"] > 4 << 20 and marked["deleted"]["count"] == 0
    assert data_bytes(repo_cli) == full_size
    check_clean(repo_cli)
    waiting = repo_cli.ok("prune", "--dry-run", env=at(2.5)).out
    assert "wait for their safety margin" in waiting
    dry = repo_cli.ok("prune", "--dry-run", env=at(4)).out
    assert "would delete" in dry
    assert data_bytes(repo_cli) == full_size

    # Phase 2, another margin later: deleted.
    swept = prune(repo_cli, 4)
    assert swept["deleted"]["bytes"] > 4 << 20
    assert data_bytes(repo_cli) < full_size - (4 << 20)
    check_clean(repo_cli)
    restore_equals(repo_cli, last["snapshot_id"], expected, tmp_path / "r")
    again = prune(repo_cli, 6)
    assert again["deleted"]["count"] == again["marked"]["count"] == 0


def test_a_backup_that_dedups_against_forgotten_data_keeps_it(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    src = tmp_path / "src"
    content = random.Random(2).randbytes(3 << 20)
    forget_a_big_file(repo_cli, src, content, workspace)
    # Before any mark, the same content comes back: the backup deduplicates against it.
    (src / "big.bin").write_bytes(content)
    back = backup(repo_cli, src, 0.5)
    assert back["bytes_added"] < 1 << 20
    expected = tree_state(src)
    prune(repo_cli, 2)
    prune(repo_cli, 4)
    check_clean(repo_cli)
    restore_equals(repo_cli, back["snapshot_id"], expected, tmp_path / "r")


def test_repack_moves_the_few_needed_blobs_out_of_sparse_packs(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):  # below the minimum chunk size: one blob each, all in one pack
        (src / f"f{i}.bin").write_bytes(random.Random(i).randbytes(100_000))
    backup(repo_cli, src, 0)
    for i in range(3, 10):
        (src / f"f{i}.bin").unlink()
    last = backup(repo_cli, src, 0.1, "--full")
    assert last["bytes_added"] < 10_000  # the three files left are deduplicated
    expected = tree_state(src)
    repo_cli.ok("forget", "--keep-last", "1", env=at(0.2))
    before = data_bytes(repo_cli)

    no_repack = repo_cli.ok("prune", "--dry-run", "--json", "--repack-below", "0", env=at(2))
    assert no_repack.json()["repacked"]["count"] == 0
    dry = repo_cli.ok("prune", "--dry-run", env=at(2)).out
    assert "would repack 1 pack(s)" in dry

    first = prune(repo_cli, 2)
    assert first["repacked"]["count"] == 1
    assert first["repacked"]["packs"][0]["detail"] == "30% used"
    assert len(first["new_packs"]["packs"]) == 1
    assert 300_000 < first["new_packs"]["bytes"] < 400_000
    check_clean(repo_cli)
    restore_equals(repo_cli, last["snapshot_id"], expected, tmp_path / "r1")

    second = prune(repo_cli, 4)
    assert second["deleted"]["bytes"] > 1_000_000  # the old pack, whole
    assert data_bytes(repo_cli) < before - 600_000
    check_clean(repo_cli)
    restore_equals(repo_cli, last["snapshot_id"], expected, tmp_path / "r2")


def test_prune_beside_a_concurrent_backup(repo_cli: CLI, workspace: Path, tmp_path: Path):
    content = random.Random(3).randbytes(16 << 20)
    forget_a_big_file(repo_cli, tmp_path / "src", content, workspace)
    other = tmp_path / "other"
    shutil.copytree(workspace, other, symlinks=True)
    (other / "big.bin").write_bytes(content)
    (other / "own.bin").write_bytes(random.Random(4).randbytes(8 << 20))
    marked = prune(repo_cli, 2)  # the big file's packs: out of the index
    assert marked["marked"]["bytes"] > 16 << 20

    # A backup of the same content in another process while prune sweeps those packs.
    backup_proc = subprocess.Popen(
        repo_cli.command("backup", str(other), "--name", "other", "--json"),
        env=repo_cli.env | at(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    prune_proc = subprocess.Popen(
        repo_cli.command("prune", "--json"),
        env=repo_cli.env | at(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = backup_proc.communicate(timeout=300)
    assert backup_proc.returncode == 0, err
    pout, perr = prune_proc.communicate(timeout=300)
    assert prune_proc.returncode == 0, perr
    assert json.loads(pout)["deleted"]["bytes"] > 16 << 20
    sid = json.loads(out)["snapshot_id"]
    expected = tree_state(other)
    check_clean(repo_cli)
    restore_equals(repo_cli, sid, expected, tmp_path / "r1")
    # Later sweeps leave the backup's packs alone.
    for hours in (6, 8, 10):
        prune(repo_cli, hours)
    check_clean(repo_cli)
    restore_equals(repo_cli, sid, expected, tmp_path / "r2")


def test_a_backup_that_deduplicated_against_a_marked_pack_does_not_commit(
    repo_cli: CLI, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    src = tmp_path / "src"
    content = random.Random(5).randbytes(3 << 20)
    forget_a_big_file(repo_cli, src, content, workspace)
    # A backup opens the repository (and loads the index) before prune marks ...
    stale = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, tmp_path / "other-cache")
    marked = prune(repo_cli, 2)
    assert marked["marked"]["bytes"] > 3 << 20
    # ... and deduplicates against the marked blobs: it must refuse to commit a snapshot
    # whose data is no longer indexed, rather than leave one that does not restore.
    (src / "big.bin").write_bytes(content)
    monkeypatch.setenv("CLEANCUT_NOW", at(2.2)["CLEANCUT_NOW"])
    before = {p.name for p in (repo_cli.repo / "snapshots").iterdir()}
    with pytest.raises(CleancutError, match="concurrent prune"):
        Archiver(stale, src, BackupOptions(name="agent")).run()
    stale.close()
    assert {p.name for p in (repo_cli.repo / "snapshots").iterdir()} == before
    check_clean(repo_cli)
    # Run again: the data is stored anew, and the marked pack can go.
    result = repo_cli.ok("backup", str(src), "--name", "agent", "--json", env=at(2.3)).json()
    assert result["bytes_added"] > 2 << 20
    expected = tree_state(src)
    for hours in (4, 6):
        prune(repo_cli, hours)
    check_clean(repo_cli)
    restore_equals(repo_cli, result["snapshot_id"], expected, tmp_path / "r")


def _write_unindexed_pack(cli: CLI, seed: int) -> str:
    """A pack as a backup killed before its index segment leaves it."""
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    builder = PackBuilder(repo.keys)
    data = random.Random(seed).randbytes(1000)
    blob_id = repo.keys.blob_id(data)
    builder.add_sealed(DATA, blob_id, builder.seal_blob(DATA, blob_id, b"\0" + data), len(data))
    pack = builder.finish()
    pack_id = content_hash(pack)
    repo.backend.put(pack_name(pack_id), pack)
    repo.close()
    return pack_id


def test_packs_no_index_lists_go_one_margin_after_they_are_seen(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    crashed = _write_unindexed_pack(repo_cli, 1)
    first = prune(repo_cli, 1)
    assert [p["pack"] for p in first["marked_unindexed"]["packs"]] == [crashed]
    fresh = _write_unindexed_pack(repo_cli, 2)  # a backup still writing, say
    second = prune(repo_cli, 2)
    assert [p["pack"] for p in second["deleted"]["packs"]] == [crashed]
    assert [p["pack"] for p in second["marked_unindexed"]["packs"]] == [fresh]
    assert (repo_cli.repo / pack_name(fresh)).exists()
    assert not (repo_cli.repo / pack_name(crashed)).exists()
    third = prune(repo_cli, 3)
    assert [p["pack"] for p in third["deleted"]["packs"]] == [fresh]
    check_clean(repo_cli)


def test_lock_held_stale_and_unlock(
    repo_cli: CLI, workspace: Path, monkeypatch: pytest.MonkeyPatch
):
    backup(repo_cli, workspace, 0)
    monkeypatch.setenv("CLEANCUT_NOW", at(1)["CLEANCUT_NOW"])
    held = HeldLock.acquire(LocalBackend(repo_cli.repo))
    lock_path = repo_cli.repo / LOCK_NAME
    assert lock_path.exists()

    res = repo_cli.run("prune", env=at(1.1))
    assert res.code == 12
    assert_no_traceback(res)
    assert socket.gethostname() in res.err and f"pid {os.getpid()}" in res.err
    assert "locked by prune" in res.err
    assert repo_cli.run("prune", "--dry-run", env=at(1.1)).code == 0  # reads need no lock

    res = repo_cli.run("unlock", env=at(1.1))  # live: kept
    assert res.code == 12 and "not removed" in res.err
    assert_no_traceback(res)
    assert lock_path.exists()

    res = repo_cli.run("prune", env=at(2))  # expired (30 min): stale, named, not taken over
    assert res.code == 12
    assert_no_traceback(res)
    assert "stale lock" in res.err and "cleancut unlock" in res.err
    assert f"pid {os.getpid()}" in res.err

    res = repo_cli.ok("unlock", env=at(2))
    assert "removed stale lock" in res.out
    assert not lock_path.exists()
    repo_cli.ok("prune", env=at(2))
    assert not lock_path.exists()  # released after the run
    held.release()  # not ours any more: leaves nothing behind, raises nothing

    HeldLock.acquire(LocalBackend(repo_cli.repo))
    res = repo_cli.ok("unlock", "--force", env=at(1.1))
    assert "warning: removed live lock" in res.err
    assert not lock_path.exists()
    assert "no locks" in repo_cli.ok("unlock").out


def test_forget_one_source_and_prune_in_one_go(repo_cli: CLI, workspace: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("a")
    for hours in (0, 1):
        (workspace / "changing.bin").write_bytes(random.Random(hours).randbytes(10_000))
        backup(repo_cli, workspace, hours, "--full")
        backup(repo_cli, other, hours, "--full", name="other")
    out = repo_cli.ok(
        "forget", "--name", "agent", "--keep-last", "1", "--prune", "--json", env=at(2)
    ).json()
    assert {v["name"] for v in out["snapshots"]} == {"agent"}
    assert len(out["forgotten"]) == 1
    assert out["prune"]["dry_run"] is False
    # Right after forget, a prune frees nothing: forget saw those segments just now.
    assert out["prune"]["marked"]["count"] == out["prune"]["repacked"]["count"] == 0
    assert out["prune"]["next_run"] is None or out["prune"]["next_run"] > at(2)["CLEANCUT_NOW"]
    names = [s["name"] for s in repo_cli.ok("snapshots", "--json").json()]
    assert sorted(names) == ["agent", "other", "other"]
    text = repo_cli.ok("forget", "--keep-last", "1", "--dry-run", "--prune", env=at(2)).out
    assert "--prune skipped" in text


def test_a_prune_that_lost_its_lock_stops(repo_cli: CLI, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLEANCUT_NOW", at(0)["CLEANCUT_NOW"])
    backend = LocalBackend(repo_cli.repo)
    held = HeldLock.acquire(backend)
    held.check()
    backend.delete(LOCK_NAME)  # `unlock --force` from elsewhere
    with pytest.raises(RepositoryLocked, match="lost"):
        held.check()


def test_forget_prune_reports_what_it_forgot_when_prune_is_locked(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    backup(repo_cli, workspace, 1, "--full")
    held = HeldLock.acquire(LocalBackend(repo_cli.repo))
    try:
        res = repo_cli.run("forget", "--keep-last", "1", "--prune", env=at(2))
    finally:
        held.release()
    assert res.code == 12
    assert "forgot 1 snapshot(s)" in res.out
    assert "prune did not run" in res.err
