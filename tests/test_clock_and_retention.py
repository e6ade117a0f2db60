"""A clock stepped back, forked chains, a stopped source's newest state, absurd numbers.

Time moves only with the injected clock (CLEANCUT_NOW), forwards and, here, backwards.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import CLI, PASSWORD, assert_no_traceback, tree_state
from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.prune.retention import KeepRules, plan_forget
from cleancut.repository.locks import LOCK_NAME, Lock, remove_locks
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = 3600.0


def at(hours: float) -> dict[str, str]:
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


def backup(cli: CLI, src: Path, hours: float, *args: str, code: int = 0) -> dict:
    res = cli.run("backup", str(src), "--name", "agent", "--json", *args, env=at(hours))
    assert res.code == code, res.err
    assert "Traceback" not in res.err
    out = res.json()
    out["id"] = out["snapshot_id"]
    return out


def write(src: Path, text: str) -> None:
    (src / "workspace" / "MEMORY.md").write_text(text)


def restored(cli: CLI, ref: str, target: Path) -> dict:
    cli.ok("restore", ref, "--target", str(target))
    return tree_state(target)


def snapshots(cli: CLI) -> dict[str, dict]:
    return {s["id"]: s for s in cli.ok("snapshots", "--json").json()}


# --- item 6: the newest state of a stopped source ------------------------------------


def test_keep_daily_keeps_the_newest_incrementals_of_a_stopped_source(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    full = backup(repo_cli, workspace, 0)
    write(workspace, "one")
    backup(repo_cli, workspace, 1)
    write(workspace, "two: the last state")
    last = backup(repo_cli, workspace, 2)
    expected = tree_state(workspace)
    # The agent stopped; five days later the daily forget runs.
    out = repo_cli.ok("forget", "--keep-daily", "7", "--json", env=at(5 * 24)).json()
    assert out["forgotten"] == []
    verdicts = {v["id"]: v for v in out["snapshots"]}
    assert "newest of its source" in verdicts[last["id"]]["reasons"]
    assert verdicts[full["id"]]["keep"]
    assert restored(repo_cli, "latest", tmp_path / "r") == expected


def test_only_naming_the_newest_forgets_it(repo_cli: CLI, workspace: Path):
    full = backup(repo_cli, workspace, 0)
    write(workspace, "one")
    inc = backup(repo_cli, workspace, 1)
    out = repo_cli.ok("forget", "--keep-within", "1s", "--json", env=at(500)).json()
    assert out["forgotten"] == []  # the newest and the full it needs stay
    res = repo_cli.run("forget", full["id"][:12], env=at(500))
    assert res.code == 2 and f"needed by {inc['id'][:12]}" in res.err
    assert_no_traceback(res)
    res = repo_cli.run("forget", inc["id"][:12], "--keep-last", "1")
    assert res.code == 2 and "not both" in res.err
    out = repo_cli.ok("forget", inc["id"][:12], "--json").json()
    assert out["forgotten"] == [inc["id"]]
    assert list(snapshots(repo_cli)) == [full["id"]]


def snap(sid: str, hours: float, seq: int, chain: str, parent: str | None = None) -> Snapshot:
    return Snapshot(
        time=iso(T0 + timedelta(hours=hours)),
        name="agent",
        host="h",
        user="u",
        paths=["/x"],
        tree="00" * 32,
        kind="full" if seq == 0 else "incremental",
        parent=parent,
        chain=chain,
        seq=seq,
        id=sid,
    )


@st.composite
def skewed_histories(draw: st.DrawFn) -> list[Snapshot]:
    """One source's chains, each link taken at a time the clock may have stepped back to."""
    snaps: list[Snapshot] = []
    for c in range(draw(st.integers(1, 3))):
        chain = f"c{c}"
        parent: Snapshot | None = None
        for seq in range(draw(st.integers(1, 8))):
            hours = c * 100 + draw(st.floats(0, 90))
            current = snap(f"{chain}-{seq}", hours, seq, chain, parent.id if parent else None)
            snaps.append(current)
            parent = current
    return snaps


@settings(max_examples=200, deadline=None)
@given(
    history=skewed_histories(),
    rules=st.builds(
        KeepRules,
        last=st.integers(0, 3),
        daily=st.integers(0, 3),
        within=st.sampled_from([0.0, 60.0, HOUR]),
    ).filter(lambda r: not r.empty),
    later=st.floats(0, 2000),
)
def test_the_tip_of_the_newest_chain_and_its_links_are_always_kept(history, rules, later):
    now = T0 + timedelta(hours=400 + later)
    keep = {v.snapshot.id for v in plan_forget(history, rules, now, 24 * HOUR) if v.keep}
    last_chain = max(s.chain for s in history)
    tip = max(s.seq for s in history if s.chain == last_chain)
    assert {f"{last_chain}-{seq}" for seq in range(tip + 1)} <= keep


# --- item 7: a clock stepped back -------------------------------------------------------


def test_a_clock_stepped_back_neither_forks_nor_hides_the_newest(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    full = backup(repo_cli, workspace, 10)
    write(workspace, "at 11h")
    first = backup(repo_cli, workspace, 11)
    # NTP steps the clock back two hours: the next backups still go on the chain's tip.
    write(workspace, "at 9h, after the step")
    res = repo_cli.run("backup", str(workspace), "--name", "agent", "--json", env=at(9))
    assert res.code == 3, res.err
    assert "the clock reads 2026-11-20T09:00:00" in res.err and first["id"][:12] in res.err
    second = res.json()
    second["id"] = second["snapshot_id"]
    write(workspace, "at 9h30, the newest data")
    third = backup(repo_cli, workspace, 9.5, code=3)
    expected = tree_state(workspace)
    assert [(s["seq"], s["chain"]) for s in (first, second, third)] == [
        (1, full["chain"]),
        (2, full["chain"]),
        (3, full["chain"]),
    ]
    records = snapshots(repo_cli)
    assert records[second["id"]]["parent"] == first["id"]
    assert records[third["id"]]["parent"] == second["id"]
    assert records[second["id"]]["clock_went_back"] is True
    assert records[second["id"]]["clock_reading"] == at(9)["CLEANCUT_NOW"]
    assert records[second["id"]]["time"] > records[first["id"]]["time"]
    assert records[first["id"]]["clock_went_back"] is False
    assert restored(repo_cli, "latest", tmp_path / "latest") == expected
    status = repo_cli.ok("status", "--json", env=at(9.6)).json()["sources"][0]
    assert any("clock went back" in r for r in status["reasons"])
    out = repo_cli.ok("forget", "--keep-last", "1", "--json", env=at(9.7)).json()
    assert third["id"] not in out["forgotten"]
    assert restored(repo_cli, "latest", tmp_path / "after-forget") == expected


def test_a_forked_chain_is_found_and_latest_is_deterministic(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    """A fork as two concurrent backups or an older version with a clock bug left it."""
    backup(repo_cli, workspace, 0)
    write(workspace, "branch a")
    a = backup(repo_cli, workspace, 1)
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        record = repo.load_snapshot(a["id"])
        # Recorded before its parent, as an older version did under a clock stepped back.
        sibling = dataclasses.replace(record, time=iso(T0 - timedelta(hours=0.5)), id="")
        b_id = repo.write_snapshot(sibling)
    finally:
        repo.close()
    res = repo_cli.ok("check")
    assert f"forked at seq 1 ({b_id[:12]}, {a['id'][:12]})" in res.out
    assert f"snapshot {b_id[:12]} (seq 1 of chain" in res.out
    assert "earlier than its parent" in res.out
    status = repo_cli.ok("status", "--json", env=at(2)).json()["sources"][0]
    assert any("forked at seq 1" in r for r in status["reasons"])
    assert status["state"] == "warn"
    # The newest sibling wins, whichever order the listing returns them in.
    latest = repo_cli.ok("restore", "latest", "--target", str(tmp_path / "r"), "--json").json()
    assert latest["snapshot_id"] == a["id"]
    nxt = backup(repo_cli, workspace, 2)
    assert nxt["kind"] == "full" and "forked at seq 1" in nxt["reason"]


# --- absurd durations and counts ---------------------------------------------------------


def test_absurd_durations_and_counts_are_refused_with_the_range(repo_cli: CLI, tmp_path: Path):
    for args, words in (
        (("forget", "--keep-within", "100000000000000000000d"), "allowed 0s to 36500d"),
        (("forget", "--keep-daily", "100000000000000000000"), "0<=x<=1000000"),
        (("prune", "--safety-margin", "999999999999d"), "allowed 0s to 36500d"),
        (("restore", "--at", "99999999999d ago", "--target", str(tmp_path / "t")), "100 years"),
    ):
        res = repo_cli.run(*args)
        assert res.code == 2, (args, res.err)
        assert words in res.err, (args, res.err)
        assert "Traceback" not in res.err
    assert repo_cli.run("forget", "--keep-within", "36500d", "--dry-run").code == 0
    for toml, words in (
        ("[retention]\nkeep_daily = 100000000000000000000\n", "allowed 0 to 1,000,000"),
        ("[retention]\nkeep_within = 1e20\n", "allowed 0s to 36500d"),
        ("[retention]\nkeep_within = inf\n", "allowed 0s to 36500d"),
        ("prune_interval = 1e300\n", "allowed 0s to 36500d"),
        ("[overrides]\nincremental_retention = 1e20\n", "allowed 0s to 36500d"),
    ):
        config = tmp_path / "cleancut.toml"
        config.write_text(toml)
        res = repo_cli.run("forget", "--keep-last", "1", "--dry-run", "--config", str(config))
        assert res.code == 2, (toml, res.err)
        assert words in res.err, (toml, res.err)
        assert_no_traceback(res)


# --- a killed prune's lock -----------------------------------------------------------------

HOLD_LOCK = """
import sys
from pathlib import Path
from cleancut.backend.local import LocalBackend
from cleancut.repository.locks import HeldLock
HeldLock.acquire(LocalBackend(Path(sys.argv[1])))
print("held", flush=True)
sys.stdin.read()
"""


def test_unlock_clears_at_once_the_lock_of_a_killed_holder(repo_cli: CLI, workspace: Path):
    backup(repo_cli, workspace, 0)
    # The lock taken by prune's own code, in a process that then dies by SIGKILL.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(repo_cli.repo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=repo_cli.env | at(1),
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        res = repo_cli.run("unlock", env=at(1))  # alive: kept
        assert res.code == 12 and "not removed" in res.err
    finally:
        holder.kill()
        holder.wait()
    res = repo_cli.run("prune", env=at(1))  # a minute later, not 30: named, not taken over
    assert res.code == 12 and "no longer runs" in res.err and "cleancut unlock" in res.err
    res = repo_cli.ok("unlock", env=at(1))
    assert f"pid {holder.pid} no longer runs on this host" in res.out
    repo_cli.ok("prune", env=at(1))
    assert not (repo_cli.repo / "locks" / "prune").exists()


# --- prune on a full filesystem ------------------------------------------------------------


def fill(directory: Path) -> None:
    """Fill the filesystem to the last byte, as whatever else shares it would."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_prune_frees_space_on_a_full_filesystem(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        cli = CLI(mnt / "repo", tmp_path / "cache")
        cli.init()
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.bin").write_bytes(random.Random(1).randbytes(2_500_000))
        backup(cli, src, 0)
        (src / "a.bin").unlink()
        (src / "b.bin").write_bytes(random.Random(2).randbytes(2_500_000))
        expected = tree_state(src)
        backup(cli, src, 1, "--full")
        fill(mnt)
        reserve = mnt / "repo" / "reserve" / "prune"
        assert reserve.exists()
        # forget writes its `forgotten` record first: the reserve makes room for it
        cli.ok("forget", "--keep-last", "1", env=at(2))
        assert not reserve.exists()
        first = cli.ok("prune", "--json", env=at(2)).json()  # marks, in the reserve's room
        assert first["reserve"]["bytes"] > 0  # and refills it for the next run
        fill(mnt)  # full again: the prune that deletes must start in the reserve's room
        second = cli.ok("prune", "--json", env=at(4)).json()
        assert second["reserve"]["used_bytes"] > 0
        last = cli.ok("prune", "--json", env=at(6)).json()
        deleted = sum(p["deleted"]["bytes"] for p in (first, second, last))
        assert deleted > 2_000_000
        # the deleted packs are room again, less the reserve the last run refilled
        assert last["reserve"]["bytes"] > 0 and reserve.exists()
        assert shutil.disk_usage(mnt).free + last["reserve"]["bytes"] > 2_000_000
        cli.ok("check")
        assert restored(cli, "latest", tmp_path / "r") == expected
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_only_a_lock_of_this_host_is_judged_by_its_pid(tmp_path: Path):
    """Another host's pid means nothing here; a lock from before this host's reboot is dead."""
    backend = LocalBackend(tmp_path / "repo")
    now = T0 + timedelta(minutes=5)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    base = Lock(
        LOCK_NAME,
        "prune",
        socket.gethostname(),
        dead.pid,
        "u",
        iso(T0),
        iso(T0 + timedelta(minutes=30)),
        "t",
        started=1,  # even if the pid were reused at once, not by a process this old
    )
    for lock, removed in (
        (dataclasses.replace(base, host="elsewhere"), False),
        (dataclasses.replace(base, pid=os.getpid(), started=0), False),  # alive: kept
        (dataclasses.replace(base, pid=os.getpid(), started=0, boot_id="earlier"), True),
        (base, True),
    ):
        backend.put(LOCK_NAME, lock.to_bytes())
        result = remove_locks(backend, now, force=False)
        assert bool(result.removed) is removed, lock
        backend.delete(LOCK_NAME)
