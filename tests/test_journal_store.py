"""Journal mode in the repository: shipping batches, restoring to a point, faults, compaction.

The writer is the agent's own (agent/journal.Journal) on real directories, the
repository a real one on disk. The writer's clock is injected (records carry
its timestamps) and the repository's clock follows it through CLEANCUT_NOW, so
snapshots, batches and gap records are dated on the same time line as the
records, and days pass without sleeping.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import BackupOptions
from cleancut.archiver.policy import decide
from cleancut.backend.local import LocalBackend
from cleancut.clock import iso
from cleancut.errors import SnapshotNotFound, UsageError
from cleancut.journal.frame import JournalRecord, list_segments, segment_name
from cleancut.journal.repo.compact import compactable
from cleancut.journal.repo.point import plan_point
from cleancut.journal.repo.restore import plan_restore, replay_from_repository, restore_to_point
from cleancut.journal.repo.ship import ShipError, ship
from cleancut.journal.repo.shipped import read_shipped
from cleancut.journal.repo.store import (
    JOURNAL_PREFIX,
    Catalog,
    JournalBatch,
    batches,
    group_lineages,
    journal_seq_of,
    last_shipped,
    load_catalog,
)
from cleancut.journal.repo.verify import verify_journal
from cleancut.journal.scan import CORRUPT, DUPLICATE, GAP
from cleancut.ops.health import source_health
from cleancut.ops.runner import run_backup
from cleancut.prune.retention import KeepRules, plan_forget
from cleancut.repository.records import JOURNAL_GAP, list_records
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.sdk.journal_writer import Journal

NAME = "agent"
LOGS = ["transcript.jsonl", "mem/log.md", "q/inbox.jsonl"]
FILES = ["mem/state.json", "mem/profile.json", "q/42.json", "done/42.json", "top.txt"]
DIRS = ["mem/old", "q", "done", "tmp"]
SECOND = 1_000_000_000


def tree(root: Path) -> dict[str, tuple]:
    """What replay must reproduce: dirs, and files with content and mode (not mtimes)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st_ = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", path.read_bytes(), stat.S_IMODE(st_.st_mode))
    return out


class Clock:
    """The writer's clock (ns); `step` per record. Starts an hour ago by default."""

    def __init__(self, start: int | None = None, step: int = SECOND // 10) -> None:
        self.ns = start if start is not None else time.time_ns() - 3600 * SECOND
        self.step = step

    def __call__(self) -> int:
        self.ns += self.step
        return self.ns

    def iso(self) -> str:
        return iso(datetime.fromtimestamp(self.ns / 1e9, UTC))


class Agent:
    """A journaling agent: random mutations through the writer, the live tree at every seq."""

    def __init__(
        self,
        root: Path,
        seed: int = 1,
        segment_bytes: int = 2500,
        clock: Clock | None = None,
        start_after: int | None = None,
        ws: Path | None = None,
    ) -> None:
        self.ws = ws or root / "ws"
        self.ws.mkdir(parents=True, exist_ok=True)
        self.jdir = root / "journal"
        self.clock = clock or Clock()
        self.rng = random.Random(seed)
        self.journal = Journal(
            self.jdir, self.ws, segment_bytes=segment_bytes, clock=self.clock,
            start_after=start_after,
        )  # fmt: skip
        self.states: dict[int, dict[str, tuple]] = {self.journal.last_seq: tree(self.ws)}
        self.times: dict[int, int] = {}  # each record's timestamp

    @property
    def seq(self) -> int:
        return self.journal.last_seq

    def work(self, records: int) -> None:
        goal = self.seq + records
        while self.seq < goal:
            before = self.seq
            self._step()
            if self.seq != before:
                self.states[self.seq] = tree(self.ws)
                self.times[self.seq] = self.clock.ns  # the writer reads its clock once a record

    def _step(self) -> None:
        j, r = self.journal, self.rng
        roll = r.random()
        try:
            if roll < 0.45:
                j.append(r.choice(LOGS), r.randbytes(r.randint(10, 300)))
            elif roll < 0.65:
                j.put(r.choice(FILES), r.randbytes(r.randint(0, 400)), r.choice([None, 0o600]))
            elif roll < 0.72:
                j.rename(r.choice(FILES), r.choice(FILES))
            elif roll < 0.77:
                j.delete(r.choice(FILES + DIRS))
            elif roll < 0.82:
                j.mkdir(r.choice(DIRS))
            else:
                with j.transaction():
                    j.append(r.choice(LOGS), r.randbytes(40))
                    j.put(r.choice(FILES), r.randbytes(20))
                    if r.random() < 0.5 and (self.ws / "q/42.json").exists():
                        j.rename("q/42.json", "done/42.json")
        except (OSError, ValueError):
            pass  # refused by the writer: nothing recorded


@dataclass
class Env:
    cli: CLI
    repo: Repository
    monkeypatch: pytest.MonkeyPatch

    def at(self, clock: Clock) -> None:
        """The repository's clock follows the writer's."""
        self.monkeypatch.setenv("CLEANCUT_NOW", clock.iso())

    def backup(self, agent: Agent, full: bool = False) -> Snapshot:
        self.at(agent.clock)
        options = BackupOptions(
            name=NAME, consistency="quiesced", force_full=full, capture={"journal_seq": agent.seq}
        )
        return run_backup(self.repo, agent.ws, options).snapshot

    def ship(self, agent: Agent, upto: int | None = None):
        self.at(agent.clock)
        return ship(self.repo, NAME, agent.jdir, upto)

    def cli_env(self, agent: Agent) -> dict[str, str]:
        return {"CLEANCUT_NOW": agent.clock.iso()}


@pytest.fixture
def env(repo_cli: CLI, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    yield Env(repo_cli, repo, monkeypatch)
    repo.close()


def restore(env: Env, tmp: Path, label: str, **point) -> tuple[Path, object]:
    target = tmp / f"restore-{label}"
    result = restore_to_point(env.repo, NAME, target, **point)
    return target, result


# --- shipping and restoring to a point -------------------------------------------------


def test_restore_to_random_points_equals_the_live_workspace(env: Env, tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent", seed=3, clock=Clock(step=3 * SECOND))
    agent.work(15)
    env.backup(agent, full=True)
    shipped: list[tuple[int, int]] = []
    for round_ in range(7):
        agent.work(25)
        if round_ == 3:
            env.backup(agent)  # an incremental at a journal point
        result = env.ship(agent)
        assert result.records and result.first_seq == (shipped[-1][1] + 1 if shipped else 1)
        shipped.append((result.first_seq, result.last_seq))
        # The writer keeps writing while batches go out; the shipped file lets it trim.
        assert read_shipped(agent.jdir) == result.last_seq
        agent.journal.trim(result.last_seq)
    assert list_segments(agent.jdir)[0][0] > 1  # shipped segments older than 5 min were trimmed
    agent.work(5)  # not shipped
    assert [(b.first_seq, b.last_seq) for b in batches(env.repo, NAME)] == shipped
    assert last_shipped(env.repo, NAME) == shipped[-1][1]

    rng = random.Random(11)
    first_point = journal_seq_of(env.repo.snapshots()[0]) or 0
    points = rng.sample(range(first_point, shipped[-1][1] + 1), 22)
    points = sorted({*points, shipped[2][0], shipped[2][1], shipped[-1][1]})  # batch boundaries
    for n in points:
        target, result = restore(env, tmp_path, f"seq{n}", seq=n)
        assert tree(target) == agent.states[n], f"record {n}"
        assert result.replay.reached_seq == n and result.replay.stopped_by is None

    # Replay is idempotent: the same records again onto the same target change nothing.
    catalog, plan = plan_restore(env.repo, NAME, seq=points[5])
    target = tmp_path / "twice"
    from cleancut.restorer.restore import Restorer

    Restorer(env.repo, env.repo.load_snapshot(plan.snapshot.id), target).run()
    marker = tmp_path / "twice.applied"
    first = replay_from_repository(env.repo, catalog, plan, target, marker=marker)
    again = replay_from_repository(env.repo, catalog, plan, target, marker=marker)
    assert first.records == plan.upto_seq - plan.base_seq and again.records == 0
    assert again.skipped == first.records and tree(target) == agent.states[points[5]]

    # --at: the last record written at or before a moment.
    seq_at = points[10]
    moment = agent_time(agent, seq_at)
    target, result = restore(env, tmp_path, "at", at=moment)
    assert result.replay.reached_seq == seq_at and tree(target) == agent.states[seq_at]

    # The command line: JSON, and a point past what is shipped.
    n = points[7]
    res = env.cli.ok(
        "restore", "--name", NAME, "--seq", str(n), "--target", str(tmp_path / "cli"), "--json"
    )
    doc = res.json()
    assert tree(tmp_path / "cli") == agent.states[n]
    assert doc["journal"]["target_seq"] == n and doc["journal"]["reached_seq"] == n
    assert doc["journal"]["replayed"] == (
        {"first": doc["journal"]["base_seq"] + 1, "last": n}
        if n > doc["journal"]["base_seq"]
        else None
    )
    res = env.cli.run(
        "restore", "--name", NAME, "--seq", str(agent.seq), "--target", str(tmp_path / "x")
    )
    assert res.code == 2 and f"ends at record {shipped[-1][1]}" in res.err
    assert_no_traceback(res)
    res = env.cli.run("restore", "--name", NAME, "--seq", "20", "--target", str(tmp_path / "cli"))
    assert res.code == 2 and "not empty" in res.err  # replay needs exactly the snapshot's state
    ls = env.cli.ok("journal", "ls", NAME, "--json").json()
    assert [(b["first_seq"], b["last_seq"]) for b in ls["lineages"][0]["batches"]] == shipped
    assert "7 batches" in env.cli.ok("journal", "verify", NAME).out


def agent_time(agent: Agent, seq: int) -> datetime:
    """A moment just after record `seq` was written, before the next."""
    return datetime.fromtimestamp((agent.times[seq] + agent.clock.step // 2) / 1e9, UTC)


def test_ship_only_what_the_agent_acknowledged_and_resume_after_a_crash(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(tmp_path / "agent")
    agent.work(30)
    assert env.ship(agent, upto=12).last_seq == 12
    assert env.ship(agent, upto=12).records == 0  # nothing new up to 12

    # A ship killed after its packs and index, before its journal object: no batch is visible.
    import cleancut.journal.repo.pack as packing

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(packing, "write_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        env.ship(agent)
    monkeypatch.undo()
    assert last_shipped(env.repo, NAME) == 12 and read_shipped(agent.jdir) == 12
    result = env.ship(agent)
    assert (result.first_seq, result.last_seq) == (13, 30)
    target, _ = restore_first_full_then(env, agent, tmp_path, 30)
    assert tree(target) == agent.states[30]


def restore_first_full_then(env: Env, agent: Agent, tmp: Path, seq: int):
    if not env.repo.snapshots():
        # A base at record 0: the empty workspace the journal started on.
        empty = tmp / "empty"
        empty.mkdir(exist_ok=True)
        env.at(agent.clock)
        run_backup(
            env.repo,
            empty,
            BackupOptions(name=NAME, consistency="quiesced", capture={"journal_seq": 0}),
        )
    return restore(env, tmp, f"first{seq}", seq=seq)


# --- faults on the local journal, before shipping ---------------------------------------


def _records(jdir: Path) -> list[JournalRecord]:
    from cleancut.journal.scan import read_journal

    return list(read_journal(jdir))


def _gaps(env: Env) -> list[dict]:
    return list_records(env.repo, JOURNAL_GAP)


def _health_reasons(env: Env) -> list[str]:
    (health,) = [h for h in source_health(env.repo, datetime.now(UTC)) if h.name == NAME]
    return health.reasons


@pytest.mark.parametrize("fault", ["torn", "flip", "garbage", "deleted", "duplicate"])
def test_local_faults_are_detected_while_shipping(env: Env, tmp_path: Path, fault: str) -> None:
    agent = Agent(tmp_path / "agent", seed=5, segment_bytes=1200)
    agent.work(20)
    env.backup(agent, full=True)
    assert env.ship(agent).last_seq == 20
    agent.work(40)
    agent.journal.close()
    records = {r.seq: r for r in _records(agent.jdir)}
    segs = list_segments(agent.jdir)
    rng = random.Random(fault)

    if fault in ("torn", "garbage"):
        last = segs[-1][1]
        data = last.read_bytes()
        mine = [r for r in records.values() if r.segment == last.name]
        if fault == "torn":  # a crash mid-write: the tail cut by a random number of bytes
            keep = len(data) - rng.randint(1, len(data) - 1)
            last.write_bytes(data[:keep])
            good = max([mine[0].seq - 1] + [r.seq for r in mine if r.offset + r.size <= keep])
            boundary = any(r.offset + r.size == keep for r in mine)
        else:
            last.write_bytes(data + os.urandom(rng.randint(1, 300)))
            good, boundary = 60, False
        result = env.ship(agent)
        assert result.last_seq == good and result.error is None
        if not boundary:
            assert any(f"torn tail dropped: record {good + 1}" in w for w in result.warnings)
        assert not _gaps(env)
    else:
        if fault == "flip":
            victim = records[35]
            seg = agent.jdir / victim.segment
            data = bytearray(seg.read_bytes())
            data[victim.offset + victim.size // 2] ^= 0x10
            seg.write_bytes(bytes(data))
            good, kind, lost = 34, CORRUPT, (35, 35)
        elif fault == "deleted":
            middle = [(first, path) for first, path in segs if 25 < first < 55]
            first, path = middle[0]
            after = next(f for f, _ in segs if f > first)
            path.unlink()
            good, kind, lost = first - 1, GAP, (first, after - 1)
        else:
            first, path = next((f, p) for f, p in segs if f > 25)
            shutil.copy(path, agent.jdir / segment_name(10_000))
            good, kind, lost = 60, DUPLICATE, None
        with pytest.raises(ShipError) as caught:
            env.ship(agent)
        err = caught.value
        assert err.exit_code == 17 and err.problem is not None and err.problem.kind == kind
        assert err.result.last_seq == good and last_shipped(env.repo, NAME) == good
        assert f"last good record {good}" in str(err)
        assert read_shipped(agent.jdir) == good
        if lost is None:
            assert not _gaps(env)  # nothing is lost: a copy of records already there
            assert env.ship(agent).records == 0  # and the next run goes past it
        else:
            (gap,) = _gaps(env)
            assert (gap["from"], gap["to"]) == lost and gap["name"] == NAME
            range_text = f"{lost[0]}..{lost[1]}" if lost[1] > lost[0] else f"{lost[0]}"
            assert range_text in str(err)
            # The next backup must be a full, and status warns until it exists.
            decision = decide(
                env.repo.snapshots(), NAME, datetime.now(UTC), 86400, set(), False, _gaps(env)
            )
            assert decision.kind == "full" and f"journal gap at seq {lost[0]}" in decision.reason
            assert any("journal gap" in r for r in _health_reasons(env))
            with pytest.raises(ShipError):
                env.ship(agent)  # still cannot continue, and the gap is recorded once
            assert len(_gaps(env)) == 1
    # Restore up to the last good point is still possible.
    target, _ = restore(env, tmp_path, "good", seq=good)
    assert tree(target) == agent.states[good]

    if fault == "deleted":
        # The forced full covers the gap: ship starts a new lineage after it.
        agent.journal = Journal(agent.jdir, agent.ws, segment_bytes=1200, clock=agent.clock)
        full = env.backup(agent, full=True)
        assert journal_seq_of(full) == 60
        assert not any("journal gap" in r for r in _health_reasons(env))
        agent.work(10)
        result = env.ship(agent)
        assert result.new_lineage and (result.first_seq, result.last_seq) == (61, 70)
        assert result.base_snapshot == full.id
        for n in (65, 70, good):
            target, _ = restore(env, tmp_path, f"after{n}", seq=n)
            assert tree(target) == agent.states[n]
        assert verify_journal(env.repo, NAME).ok


# --- faults in the repository -------------------------------------------------------------


def _shipped_agent(env: Env, tmp: Path) -> tuple[Agent, list[JournalBatch]]:
    agent = Agent(tmp / "agent", seed=7)
    agent.work(10)
    env.backup(agent, full=True)
    for _ in range(4):
        agent.work(20)
        env.ship(agent)
    found = batches(env.repo, NAME)
    assert [(b.first_seq, b.last_seq) for b in found] == [(1, 30), (31, 50), (51, 70), (71, 90)]
    return agent, found


def test_a_deleted_journal_object_stops_restore_at_the_last_good_record(
    env: Env, tmp_path: Path
) -> None:
    agent, found = _shipped_agent(env, tmp_path)
    (env.cli.repo / (JOURNAL_PREFIX + found[2].id)).unlink()
    target = tmp_path / "t"
    res = env.cli.run("restore", "--name", NAME, "--seq", "80", "--target", str(target))
    assert res.code == 17 and "records 51..70" in res.err and "last good record 50" in res.err
    assert_no_traceback(res)
    assert tree(target) == agent.states[50]  # stopped at the last good record

    lossy = tmp_path / "lossy"
    res = env.cli.run(
        "restore", "--name", NAME, "--seq", "80", "--target", str(lossy), "--accept-loss", "--json"
    )
    assert res.code == 3 and "records 51..70" in res.err and "accepted loss" in res.err
    doc = res.json()["journal"]
    assert doc["lost"] == [{"first": 51, "last": 70}] and doc["reached_seq"] == 80
    assert doc["error"] is None
    # Before the damage, restore is unaffected.
    res = env.cli.ok("restore", "--name", NAME, "--seq", "45", "--target", str(tmp_path / "ok"))
    assert tree(tmp_path / "ok") == agent.states[45]
    res = env.cli.run("journal", "verify", NAME)
    assert res.code == 17 and "records 51..70" in res.err


def test_a_tampered_journal_object_is_refused(env: Env, tmp_path: Path) -> None:
    agent, found = _shipped_agent(env, tmp_path)
    path = env.cli.repo / (JOURNAL_PREFIX + found[1].id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert load_catalog(env.repo, NAME, cached=False).damaged == [found[1].id]
    target = tmp_path / "t"
    res = env.cli.run("restore", "--name", NAME, "--seq", "60", "--target", str(target))
    assert res.code == 17 and "records 31..50" in res.err and "damaged" in res.err
    assert_no_traceback(res)
    assert tree(target) == agent.states[30]
    res = env.cli.run("journal", "verify", NAME)
    assert res.code == 17 and "cannot be read" in res.err
    res = env.cli.run(
        "restore", "--name", NAME, "--seq", "60", "--target", str(tmp_path / "l"), "--accept-loss"
    )
    assert res.code == 3 and "31..50" in res.err


# --- restarting the writer, and a restored agent's new journal ---------------------------


def test_restart_continues_and_a_restored_agent_starts_a_new_lineage(
    env: Env, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / "agent", seed=9)
    agent.work(10)
    env.backup(agent, full=True)
    agent.work(30)
    assert env.ship(agent).last_seq == 40
    # Restarting the writer continues after the last durable record, and ships as a continuation.
    agent.journal.close()
    agent.journal = Journal(agent.jdir, agent.ws, segment_bytes=2500, clock=agent.clock)
    assert agent.seq == 40
    agent.work(5)
    assert (env.ship(agent).first_seq, last_shipped(env.repo, NAME)) == (41, 45)

    # The agent is restored to record 25 and journals anew: Journal(start_after=25).
    ws2 = tmp_path / "restored"
    restore_to_point(env.repo, NAME, ws2, seq=25)
    assert tree(ws2) == agent.states[25]
    agent.clock.ns += 60 * SECOND
    agent2 = Agent(tmp_path / "agent2", seed=10, clock=agent.clock, start_after=25, ws=ws2)
    agent2.states[25] = agent.states[25]
    agent2.work(5)
    first = _records(agent2.jdir)[0]
    assert first.seq == 26 and first.prev == bytes(32)  # a base record: no number reused
    # Its records do not continue the shipped chain: the fork is refused and recorded.
    with pytest.raises(ShipError) as caught:
        env.ship(agent2)
    assert caught.value.exit_code == 17 and "base record" in str(caught.value)
    assert read_shipped(agent2.jdir) == 0  # nothing of this journal is in the repository
    (gap,) = _gaps(env)
    assert (gap["from"], gap["to"]) == (26, 45)
    assert any("journal gap" in r for r in _health_reasons(env))
    decision = decide(env.repo.snapshots(), NAME, datetime.now(UTC), 86400, set(), False, [gap])
    assert decision.kind == "full"
    # The forced full is the new lineage's base; ship then continues from it.
    agent2.clock.ns += SECOND
    base = env.backup(agent2, full=True)
    agent2.work(10)
    result = env.ship(agent2)
    assert result.new_lineage and (result.first_seq, result.last_seq) == (31, 40)
    assert result.base_snapshot == base.id and not _health_reasons(env)
    catalog = load_catalog(env.repo, NAME)
    assert [(lin.base_seq, lin.last_seq) for lin in catalog.lineages] == [(0, 45), (30, 40)]
    # Each lineage restores its own history: --seq picks the newest lineage holding it.
    for n, states in ((35, agent2.states), (40, agent2.states), (20, agent.states)):
        target, _ = restore(env, tmp_path, f"fork{n}", seq=n)
        assert tree(target) == states[n], n
    # --at is never ambiguous: before the fork, the old lineage's record 38.
    target, _ = restore(env, tmp_path, "at38", at=agent_time(agent, 38))
    assert tree(target) == agent.states[38]
    target, _ = restore(env, tmp_path, "at45", at=agent_time(agent, 45))
    assert tree(target) == agent.states[45]
    target, _ = restore(env, tmp_path, "at-new", at=agent_time(agent2, 37))
    assert tree(target) == agent2.states[37]
    assert verify_journal(env.repo, NAME).ok


# --- prune: journal blobs are kept, old batches compacted ---------------------------------


def test_prune_keeps_live_batches_and_compacts_old_ones(env: Env, tmp_path: Path) -> None:
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * SECOND
    clock = Clock(start=start, step=15 * 60 * SECOND)  # a record every 15 minutes
    agent = Agent(tmp_path / "agent", seed=12, clock=clock)
    agent.work(10)
    env.backup(agent, full=True)  # record 10, day 0
    for _ in range(3):
        agent.work(20)
        env.ship(agent)
    env.backup(agent, full=True)  # record 70, ~17 h later
    agent.work(20)
    env.ship(agent)  # 71..90
    found = batches(env.repo, NAME)
    assert [(b.first_seq, b.last_seq) for b in found] == [(1, 30), (31, 50), (51, 70), (71, 90)]

    def run_prune(days_after: float) -> dict:
        moment = clock.ns + int(days_after * 86400 * SECOND)
        when = iso(datetime.fromtimestamp(moment / 1e9, UTC))
        return env.cli.ok(
            "prune", "--safety-margin", "1h", "--json", env={"CLEANCUT_NOW": when}
        ).json()

    # Within retention: nothing is compacted, and the packs of every batch stay.
    for days in (0.5, 1.0, 1.5):
        report = run_prune(days)
        assert report["journal"]["compacted"] == [] and report["journal"]["batches_kept"] == 4
    assert env.cli.run("check", "--read-data").code == 0
    assert "4 batches" in env.cli.ok("journal", "verify", NAME).out
    target, _ = restore(env, tmp_path, "p45", seq=45)
    assert tree(target) == agent.states[45]

    # Four days later every record is older than 72 h: batches up to the full at 70 go,
    # the newest batch stays (the lineage stays known).
    report = run_prune(4.0)
    assert [(c["first_seq"], c["last_seq"]) for c in report["journal"]["compacted"]] == [
        (1, 30),
        (31, 50),
        (51, 70),
    ]
    for days in (4.1, 4.2):  # the margin passes: the packs they used are swept
        run_prune(days)
    assert [(b.first_seq, b.last_seq) for b in batches(env.repo, NAME)] == [(71, 90)]
    res = env.cli.run("check", "--read-data")
    assert res.code == 0, res.err
    verified = env.cli.ok("journal", "verify", NAME).out
    assert "records 1..70 were compacted" in verified
    for n in (70, 80, 90):  # every point from the kept full on still restores
        target, _ = restore(env, tmp_path, f"c{n}", seq=n)
        assert tree(target) == agent.states[n]
    target, _ = restore(env, tmp_path, "c10", seq=10)  # a kept snapshot is its own point
    assert tree(target) == agent.states[10]
    res = env.cli.run("restore", "--name", NAME, "--seq", "45", "--target", str(tmp_path / "x"))
    assert res.code == 2 and "compacted by prune" in res.err
    assert_no_traceback(res)


# --- compaction never breaks a restore point that retention keeps (property) ------------

T0_NS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * SECOND
HOUR_NS = 3600 * SECOND


def _iso_ns(ns: int) -> str:
    return iso(datetime.fromtimestamp(ns / 1e9, UTC))


@st.composite
def schedules(draw: st.DrawFn) -> dict:
    """Records, ships, snapshots (fulls and incrementals at journal points) and, sometimes, a
    fork (a restored agent: a gap, a full, then a new lineage), over a few days."""
    t = T0_NS
    seq = 0
    lineage = {"id": "a" * 64, "since": "", "base": 0, "shipped_to": 0}
    lineages = [lineage]
    batches_: list[JournalBatch] = []
    snaps: list[Snapshot] = []
    ts: dict[tuple[str, int], int] = {}  # (lineage, seq) -> record time
    parent: Snapshot | None = None
    forked = False
    steps = draw(st.lists(st.sampled_from("wwwssfiik"), min_size=10, max_size=60))
    for i, step in enumerate(steps):
        t += draw(st.sampled_from([1, 10, 60, 180, 600, 1440])) * 60 * SECOND
        if step == "w":  # some records
            for _ in range(draw(st.integers(1, 6))):
                seq += 1
                t += 7 * SECOND
                ts[(lineage["id"], seq)] = t
        elif step == "s" and seq > lineage["shipped_to"]:  # ship a batch
            first = lineage["shipped_to"] + 1
            batches_.append(
                JournalBatch(
                    id=f"{i:064x}",
                    name=NAME,
                    lineage=lineage["id"],
                    base_seq=lineage["base"],
                    since=lineage["since"],
                    base_snapshot="",
                    first_seq=first,
                    last_seq=seq,
                    prev_hash="0" * 64,
                    last_hash="0" * 64,
                    first_ts=ts[(lineage["id"], first)],
                    last_ts=ts[(lineage["id"], seq)],
                    bytes=1,
                    blobs=("0" * 64,),
                    shipped=_iso_ns(t),
                )  # fmt: skip
            )
            lineage["shipped_to"] = seq
        elif (
            step in "fi"
            and (step == "f" or parent is None or draw(st.booleans()))
            or (step == "i" and parent is not None)
        ):
            full = step == "f" or parent is None
            sid = f"snap{i:03d}"
            chain = sid if full else parent.chain
            snap = Snapshot(
                time=_iso_ns(t), name=NAME, host="h", user="u", paths=["/w"], tree="00" * 32,
                kind="full" if full else "incremental", parent=None if full else parent.id,
                chain=chain, seq=0 if full else parent.seq + 1, capture={"journal_seq": seq},
                id=sid,
            )  # fmt: skip
            snaps.append(snap)
            parent = snap
        elif step == "k" and not forked and seq > 3:  # a restored agent journals anew
            forked = True
            restored = draw(st.integers(1, seq))
            t += HOUR_NS
            since = _iso_ns(t)  # the gap record that the fork left
            seq = restored + draw(st.integers(0, 3))  # records the new agent wrote unshipped
            t += 10 * 60 * SECOND
            gate = Snapshot(
                time=_iso_ns(t), name=NAME, host="h", user="u", paths=["/w"], tree="00" * 32,
                kind="full", chain=f"gate{i}", seq=0, capture={"journal_seq": seq}, id=f"gate{i}",
            )  # fmt: skip
            snaps.append(gate)
            parent = gate
            lineage = {"id": "b" * 64, "since": since, "base": seq, "shipped_to": seq}
            lineages.append(lineage)
    return {"batches": batches_, "snaps": snaps, "ts": ts, "end": t}


def _reachable(
    catalog: Catalog, snaps: list[Snapshot], at_ns: int, ts: dict[tuple[str, int], int]
) -> tuple[int, int] | None:
    """(lineage index, record) a restore --at reaches with the batches the catalog holds."""

    def records_of(batch: JournalBatch) -> list[JournalRecord]:
        seqs = range(batch.first_seq, batch.last_seq + 1)
        return [JournalRecord(n, ts[(batch.lineage, n)], bytes(32), ()) for n in seqs]

    moment = datetime.fromtimestamp(at_ns / 1e9, UTC)
    try:
        plan = plan_point(catalog, snaps, at=moment, records_of=records_of)
    except (UsageError, SnapshotNotFound):
        return None
    if plan is None:
        return None
    if plan.lineage is not None:
        have = set()
        for b in plan.lineage.batches:
            have.update(range(b.first_seq, b.last_seq + 1))
        if not set(range(plan.base_seq + 1, plan.upto_seq + 1)) <= have:
            return None
    lineage = plan.lineage or catalog.lineage_of(plan.snapshot)
    return (catalog.lineages.index(lineage) if lineage else -1, plan.upto_seq)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=schedules(),
    rounds=st.lists(
        st.tuples(
            st.sampled_from([1, 6, 24, 50, 100]),  # hours until the next forget + prune
            st.builds(
                KeepRules,
                last=st.integers(1, 4),
                hourly=st.integers(0, 3),
                daily=st.integers(0, 3),
                within=st.sampled_from([0.0, 6 * 3600.0]),
            ),
        ),
        min_size=1,
        max_size=5,
    ),
    retention=st.sampled_from([24 * 3600.0, 72 * 3600.0]),
)
def test_compaction_never_breaks_a_kept_restore_point(schedule, rounds, retention) -> None:
    batches_: list[JournalBatch] = schedule["batches"]
    snaps: list[Snapshot] = schedule["snaps"]
    compacted: dict[str, int] = {}
    now_ns = schedule["end"]
    for hours, rules in rounds:
        now_ns += hours * HOUR_NS
        now = datetime.fromtimestamp(now_ns / 1e9, UTC)
        snaps = [v.snapshot for v in plan_forget(snaps, rules, now, retention) if v.keep]
        before = Catalog(NAME, group_lineages(batches_), [], [], dict(compacted))
        drop = compactable(before, snaps, now, retention)
        for b in drop:
            compacted[b.lineage] = max(compacted.get(b.lineage, 0), b.last_seq)
        batches_ = [b for b in batches_ if b not in drop]
        after = Catalog(NAME, group_lineages(batches_), [], [], dict(compacted))
        assert [lin.id for lin in after.lineages] == [lin.id for lin in before.lineages]
        cutoff = now_ns - int(retention * 1e9)
        # Every moment in the retention window that restored before still restores, the same.
        for (lineage_id, seq), ts in schedule["ts"].items():
            if ts < cutoff:
                continue
            was = _reachable(before, snaps, ts, schedule["ts"])
            if was is not None:
                assert _reachable(after, snaps, ts, schedule["ts"]) == was, (lineage_id, seq)
        # Every kept snapshot is still its own restore point (by record, in its lineage).
        for snap in snaps:
            lineage = after.lineage_of(snap)
            if lineage is None or after.lineages[-1] is not lineage:
                continue  # --seq names the newest lineage's records
            n = journal_seq_of(snap)
            if n is not None and lineage.base_seq <= n <= lineage.last_seq:
                assert plan_point(after, snaps, seq=n).base_seq == n


# --- the command line ------------------------------------------------------------------


def test_journal_commands(env: Env, tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent", seed=4, segment_bytes=1500)
    agent.work(30)
    res = env.cli.ok("journal", "ship", NAME, "--dir", str(agent.jdir), "--upto", "20", "--json")
    doc = res.json()
    assert (doc["first_seq"], doc["last_seq"], doc["records"]) == (1, 20, 20)
    assert doc["shipped_seq"] == 20 and doc["error"] is None
    res = env.cli.ok("journal", "ship", NAME, "--dir", str(agent.jdir))
    assert res.out.startswith("shipped records 21..30 of agent: 10 records")
    assert "nothing new" in env.cli.ok("journal", "ship", NAME, "--dir", str(agent.jdir)).out
    listing = env.cli.ok("journal", "ls", NAME).out
    assert "1..20" in listing and "21..30" in listing
    # Damage past the shipped records: what is good goes out, then one line and exit 17.
    agent.work(20)
    agent.journal.close()
    victim = {r.seq: r for r in _records(agent.jdir)}[40]
    seg = agent.jdir / victim.segment
    data = bytearray(seg.read_bytes())
    data[victim.offset + 9] ^= 0xFF
    seg.write_bytes(bytes(data))
    res = env.cli.run("journal", "ship", NAME, "--dir", str(agent.jdir))
    assert res.code == 17 and "shipped records 31..39" in res.err and "record 40" in res.err
    assert_no_traceback(res)
    res = env.cli.run("journal", "ship", NAME, "--dir", str(tmp_path / "nowhere"))
    assert res.code == 2 and "no journal directory" in res.err
    assert_no_traceback(res)
    assert env.cli.ok("journal", "verify", NAME, "--json").json()["ok"]


def test_measure_ship_and_replay_rates(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ship and replay rates for appends of ~1 KiB (what a transcript-writing agent does)."""
    ws, jdir = tmp_path / "ws", tmp_path / "journal"
    ws.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    run_backup(
        env.repo,
        empty,
        BackupOptions(name=NAME, consistency="quiesced", capture={"journal_seq": 0}),
    )
    rng = random.Random(0)
    n = 3000
    with Journal(jdir, ws) as journal:
        for i in range(n):
            journal.append(f"t{i % 7}.jsonl", rng.randbytes(512) + b"x" * 512)
    started = time.perf_counter()
    result = ship(env.repo, NAME, jdir)
    ship_s = time.perf_counter() - started
    assert result.records == n
    started = time.perf_counter()
    out = restore_to_point(env.repo, NAME, tmp_path / "replayed", seq=n)
    replay_s = time.perf_counter() - started
    assert out.replay.records == n
    assert tree(tmp_path / "replayed") == tree(ws)
    mb = result.bytes / 1e6
    with capsys.disabled():
        print(
            f"\nship: {n} records, {mb:.1f} MB in {ship_s:.2f} s = {n / ship_s:,.0f} records/s, "
            f"{mb / ship_s:.1f} MB/s; restore + replay: {n / replay_s:,.0f} records/s, "
            f"{out.replay.bytes / 1e6 / replay_s:.1f} MB/s of data"
        )
