"""Journal mode, live: a real agent journals flat out, a real repository restores any record.

The simulated agent runs in journal mode in its own process (its whole tree
written through the SDK's journal). At random moments it is told (SIGUSR1) to
stop itself at its next record boundary, and once stopped the `applied` marker
must show no operation of a record applied and nothing durable unapplied; the
tree is copied: that copy is the live state at sequence number N. A few more points are taken
through the control protocol (quiesce, flush: the flush reply's `journal_seq`
names the record). Meanwhile the journal is shipped to the repository through
the command line now and then. Then each point is restored with `cleancut
restore --seq N` from the base (a hot backup taken at the start, which records
the journal seq of its final flush) plus the shipped batches, and must be
byte for byte the copy, and pass the invariant checker.

Which standard a journal state meets: a record boundary inside a unit of work
is one instant of the agent (a tool call before its result, a ledger intent
durable before its send), so the quiesced rules cannot hold there; the
crash-consistent rules do, and more: no file is ever caught mid-write, and the
steps journal mode groups (journalio.py) are whole (`journaled=True`). The
oracle also knows which record each write went into, so the restored tree is
checked to be exactly the state at N (`journal_seq=N`). The points taken while
quiesced are held to the quiesced standard, with the in-flight actions the
quiesce reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CLI

from cleancut.hot.freeze import group_members
from cleancut.hot.session import SessionReport, quiesced
from cleancut.journal.replay import read_marker
from cleancut.journal.scan import read_journal, read_tail
from cleancut.sdk.journal_writer import MARKER_NAME
from cleancut.testing.simulated.checker import check_workspace

NAME = "journaled"
FREEZE_POINTS = 21
QUIESCE_POINTS = 3
SHIP_EVERY = 6  # points


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    root: Path
    journal: Path
    oracle: Path
    socket: Path

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"


@dataclass
class Point:
    seq: int
    copy: Path
    quiesced: bool = False
    inflight: frozenset[str] = frozenset()


@dataclass
class Live:
    cli: CLI
    agent: Agent
    base: Path
    base_seq: int
    points: list[Point] = field(default_factory=list)
    retries: int = 0
    last_seq: int = 0  # the journal's end when the first run stopped (all shipped)


def start_agent(root: Path, journal: Path, oracle: Path, *extra: str) -> Agent:
    sock = Path(tempfile.mkdtemp(prefix="jl-", dir="/tmp")) / "s.sock"  # AF_UNIX path limit
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleancut.testing.simulated", "run", "--root", str(root),
         "--socket", str(sock), "--oracle", str(oracle), "--journal", str(journal),
         "--seed", "13", "--async-fraction", "0.25", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: SIGSTOP takes all of it
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.split() != ["ready", str(proc.pid)]:
        proc.kill()
        raise AssertionError(f"agent did not start: {line!r} {proc.communicate()[1]}")
    return Agent(proc, root, journal, oracle, sock)


def stop_agent(agent: Agent) -> str:
    if agent.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.proc.pid, signal.SIGCONT)
        agent.proc.terminate()
    out, err = agent.proc.communicate(timeout=30)
    shutil.rmtree(agent.socket.parent, ignore_errors=True)
    assert agent.proc.returncode == 0, (out, err)
    assert "journal_seq=" in out, out
    return out


def durable(journal: Path) -> int:
    """The journal's last intact record (a record being written reads as a torn tail)."""
    last = read_tail(journal).last
    return last.seq if last else 0


def wait_records(journal: Path, beyond: int, within: float = 20.0) -> int:
    deadline = time.monotonic() + within
    while (seq := durable(journal)) <= beyond:
        assert time.monotonic() < deadline, f"no journal record past {beyond} in {within}s"
        time.sleep(0.05)
    return seq


@contextlib.contextmanager
def stopped(agent: Agent) -> Iterator[None]:
    """Stop the agent at its next record boundary (SIGUSR1: it stops itself there, holding
    the journal so no thread is inside a record) until every thread is stopped; SIGCONT after."""
    pgid = agent.proc.pid
    os.kill(agent.proc.pid, signal.SIGUSR1)
    try:
        deadline = time.monotonic() + 10
        while not all(set(s) <= {"T", "t"} for s in group_members(pgid).values()):
            assert time.monotonic() < deadline, "the agent did not stop"
            time.sleep(0.001)
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


def freeze_point(agent: Agent, dst: Path) -> tuple[int | None, int]:
    """Copy the tree at a record boundary: (its seq, tries), or (None, tries) if none came.

    The agent stops itself between records, so the first try is at a boundary; the
    marker is still read to prove it (and a few tries remain as a guard, not a hope)."""
    for tries in range(1, 4):
        with stopped(agent):
            marker = read_marker(agent.journal / MARKER_NAME)
            assert marker is not None
            applied, ops = marker
            if ops == 0 and applied == durable(agent.journal):
                shutil.copytree(agent.root, dst, symlinks=True)
                return applied, tries
    return None, tries


def quiesce_point(agent: Agent, dst: Path) -> Point:
    report = SessionReport()
    quiesced(agent.address, quiesce_timeout=10, horizon=0.5,
             capture=lambda: shutil.copytree(agent.root, dst, symlinks=True), report=report,
             lease=5)
    assert report.journal_seq is not None, "the flush reply carries no journal_seq"
    keys = frozenset(a["key"] for a in report.inflight)
    return Point(report.journal_seq, dst, quiesced=True, inflight=keys)


def ship(cli: CLI, journal: Path, upto: int | None = None) -> None:
    extra = ["--upto", str(upto)] if upto is not None else []
    cli.ok("journal", "ship", NAME, "--dir", str(journal), *extra)


def restore_seq(cli: CLI, seq: int, target: Path) -> None:
    cli.ok("restore", "--name", NAME, "--seq", str(seq), "--target", str(target))


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a restore must reproduce of the tree: every directory, file bytes and modes."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = ("file", f.read(), oct(st.st_mode))
    return out


def differences(got: Path, want: Path) -> list[str]:
    a, b = tree(got), tree(want)
    out = [f"missing: {p}" for p in sorted(set(b) - set(a))]
    out += [f"extra: {p}" for p in sorted(set(a) - set(b))]
    for p in sorted(set(a) & set(b)):
        if a[p] != b[p]:
            what = "mode" if a[p][:2] == b[p][:2] else "content"
            out.append(f"{what} differs: {p}")
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("journal-live")
    cli = CLI(base / "repo", base / "cache")
    cli.init()
    agent = start_agent(base / "agent", base / "journal", base / "oracle.jsonl")
    try:
        wait_records(agent.journal, 200)
        res = cli.ok("backup", str(agent.root), "--name", NAME, "--agent", agent.address,
                     "--quiesce-timeout", "10s", "--horizon", "1s", "--json")
        summary = json.loads(res.out)
        assert summary["consistency"] == "quiesced"
        base_seq = summary["capture"].get("journal_seq")
        assert isinstance(base_seq, int) and base_seq > 0, summary["capture"]
        state = Live(cli, agent, base, base_seq)
        rng = random.Random(2024)
        quiesce_at = set(rng.sample(range(FREEZE_POINTS), QUIESCE_POINTS))
        for n in range(FREEZE_POINTS):
            time.sleep(rng.uniform(0.03, 0.25))
            seq, tries = freeze_point(agent, base / "points" / f"f{n}")
            state.retries += tries - 1
            assert seq is not None, "stopped at a boundary, yet a record is half applied"
            state.points.append(Point(seq, base / "points" / f"f{n}"))
            if n in quiesce_at:
                state.points.append(quiesce_point(agent, base / "points" / f"q{n}"))
            if n % SHIP_EVERY == SHIP_EVERY - 1:
                ship(cli, agent.journal, durable(agent.journal))
        stop_agent(agent)
        ship(cli, agent.journal)  # the rest, once the agent has stopped
        state.last_seq = durable(agent.journal)
        yield state
    finally:
        if agent.proc.poll() is None:
            stop_agent(agent)


def test_replay_equals_live_state(live: Live) -> None:
    frozen = [p for p in live.points if not p.quiesced]
    assert len(frozen) >= 20 and len({p.seq for p in live.points}) >= 20
    assert all(p.seq >= live.base_seq for p in live.points)
    assert max(p.seq for p in live.points) - live.base_seq >= 500, "the agent hardly wrote"
    for i, point in enumerate(live.points):
        target = live.base / "restored" / f"p{i}"
        restore_seq(live.cli, point.seq, target)
        assert differences(target, point.copy) == [], f"record {point.seq}"
        found = check_workspace(target, live.agent.oracle, point.inflight,
                                quiesced=point.quiesced, journaled=True,
                                journal_seq=point.seq)
        assert found == [], f"record {point.seq} (quiesced={point.quiesced}): {found[:5]}"
        shutil.rmtree(target)


def test_checker_tells_one_record_from_the_next(live: Live) -> None:
    """The exact-cut check is not vacuous: a state is not the state one record earlier."""
    point = next(p for p in live.points if not p.quiesced)
    found = check_workspace(point.copy, live.agent.oracle, quiesced=False, journaled=True,
                            journal_seq=point.seq - 1)
    assert any(line.startswith("journal:") for line in found), found


def test_restart_continues_the_sequence(live: Live) -> None:
    first = live.agent
    agent = start_agent(first.root, first.journal, first.oracle)
    try:
        wait_records(agent.journal, live.last_seq + 100)
    finally:
        out = stop_agent(agent)
    scan = read_journal(agent.journal)
    seqs = [r.seq for r in scan]
    assert scan.error() is None
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # contiguous, hash-linked (the reader)
    assert seqs[-1] > live.last_seq + 100 and f"journal_seq={seqs[-1]}" in out
    ship(live.cli, agent.journal)  # the new records link onto the shipped ones
    target = live.base / "restored" / "after-restart"
    restore_seq(live.cli, seqs[-1], target)
    assert differences(target, agent.root) == []
    found = check_workspace(target, agent.oracle, quiesced=False, journaled=True,
                            journal_seq=seqs[-1])
    assert found == [], found[:5]


def test_no_reuse_after_a_restore(live: Live) -> None:
    point = live.points[len(live.points) // 2]
    root = live.base / "second" / "agent"
    restore_seq(live.cli, point.seq, root)
    journal, oracle = live.base / "second" / "journal", live.base / "second" / "oracle.jsonl"
    agent = start_agent(root, journal, oracle, "--journal-start-after", str(point.seq))
    try:
        end = wait_records(journal, point.seq + 50)
    finally:
        stop_agent(agent)
    records = list(read_journal(journal))
    assert records[0].seq == point.seq + 1 and records[0].prev == bytes(32)  # a base record
    assert records[-1].seq >= end
    found = check_workspace(root, oracle, quiesced=False, journaled=True,
                            journal_seq=records[-1].seq)
    assert found == [], found[:5]
