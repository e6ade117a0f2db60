#!/usr/bin/env python3
"""Benchmark journal mode with the simulated agent: write cost, storage, replay, loss window.

Issue 6, "Speed and cost": for the simulated agent in journal mode, report

1. write overhead per mutation (p50, p99) against writing the file directly. The write mix
   is the agent's own: a few seconds of the agent in journal mode give a journal; its
   records (small appends, ~5 KB whole-file puts, the grouped steps) are then applied
   once the default mode's way (append without fsync; atomic replace: temp file, fsync,
   rename, fsync of the directory; rename; unlink) and once through the SDK's `Journal`
   (one record each, fdatasync'd before it is applied), timing each record;
2. storage: the agent runs with a hot backup every checkpoint and `cleancut journal ship`
   every incremental sync interval of the standard profile (5 min, 60 s), both scaled down
   by --scale (so a run of --seconds stands for --seconds x scale of real time); the
   repository's growth is attributed to the backups (the snapshots-alone baseline) and to
   the journal batches. The agent flat out, then paced (--pace: seconds between turns,
   one run per value; a pace p stands for one turn every p x scale seconds of real time);
3. replay rate of `cleancut restore --seq N`: N one record before the last checkpoint, so
   a whole checkpoint interval of records is replayed onto the snapshot before it; the
   rate is over the restore's extra time against restoring that snapshot alone. The
   replay engine alone (in process, from the local journal) is shown too;
4. data-loss window at the standard 60 s interval, measured: the agent runs flat out and
   the journal is shipped every --loss-interval seconds; each record's window is the time
   from its timestamp (written just before it is applied) to the end of the ship that put
   it in the repository.

Percentiles are nearest-rank. Sizes are apparent bytes.

Usage:
    python benchmarks/journal.py [--seconds 45] [--scale 20] [--pace 0.3,3]
                                 [--loss-interval 60] [--loss-intervals 2]
                                 [--work benchmarks/work/journal] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import dir_bytes, machine_info, md_table  # noqa: E402  (sibling module)

from cleancut.journal.frame import Append, Delete, JournalRecord, Mkdir, Put, Rename
from cleancut.journal.replay import replay_into
from cleancut.journal.scan import read_journal, read_tail
from cleancut.sdk.journal_writer import Journal  # noqa: E402
from cleancut.testing.simulated import diskio  # noqa: E402

PASSWORD = "journal benchmark"
NAME = "agent"
STANDARD_CHECKPOINT = 300.0  # the standard profile's checkpoint cadence, seconds
STANDARD_SYNC = 60.0  # its incremental sync interval
BUDGET = (2.0, 3.0)  # the operator's budget: journal + snapshots within 2x-3x snapshots alone
MIX_SECONDS = 4.0
MIX_RECORDS = 6000
HOT_ARGS = ("--quiesce-timeout", "30s", "--horizon", "2s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


# --- the pieces: repository, agent -----------------------------------------------


class Repo:
    """A fresh repository driven through the command line, as an operator would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANCUT_")} | {
            "CLEANCUT_REPO": str(path / "repo"),
            "CLEANCUT_PASSWORD": PASSWORD,
            "CLEANCUT_CACHE_DIR": str(path / "cache"),
        }
        self.run("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1")

    def run(self, *args: str) -> tuple[str, float]:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "cleancut.cli.main", *args], env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"cleancut {shlex.join(args)} exited {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        return proc.stdout, took

    def size(self) -> int:
        return dir_bytes(self.path / "repo")


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    root: Path
    journal: Path
    socket: Path


def start_agent(base: Path, *extra: str) -> Agent:
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    sock = Path(tempfile.mkdtemp(prefix="jb-", dir="/tmp")) / "s.sock"
    root, journal = base / "agent", base / "journal"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleancut.testing.simulated", "run", "--root", str(root),
         "--socket", str(sock), "--oracle", str(base / "oracle.jsonl"), "--journal",
         str(journal), "--seed", "21", "--async-fraction", "0.1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"agent did not start: {line!r} {proc.communicate()[1]}")
    return Agent(proc, root, journal, sock)


def stop_agent(agent: Agent) -> str:
    if agent.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.proc.pid, signal.SIGCONT)
        agent.proc.terminate()
    out, err = agent.proc.communicate(timeout=60)
    shutil.rmtree(agent.socket.parent, ignore_errors=True)
    if agent.proc.returncode != 0:
        raise RuntimeError(f"agent exited {agent.proc.returncode}: {err.strip()}")
    return out.strip()


def durable(journal: Path) -> int:
    last = read_tail(journal).last
    return last.seq if last else 0


def hot_backup(repo: Repo, agent: Agent) -> dict[str, Any]:
    out, took = repo.run("backup", str(agent.root), "--name", NAME, "--agent",
                         f"unix:{agent.socket}", *HOT_ARGS, "--json")
    summary = json.loads(out)
    seq = summary.get("capture", {}).get("journal_seq")
    if not isinstance(seq, int):
        raise RuntimeError("the hot backup recorded no journal_seq (capture.journal_seq)")
    return {"id": summary["snapshot_id"], "seq": seq, "seconds": took}


def ship(repo: Repo, journal: Path, upto: int | None = None) -> float:
    extra = ["--upto", str(upto)] if upto is not None else []
    return repo.run("journal", "ship", NAME, "--dir", str(journal), *extra)[1]


# --- 1. write overhead ---------------------------------------------------------------


def agent_mix(work: Path) -> list[JournalRecord]:
    """A few seconds of the agent, flat out, in journal mode: its records are the mix."""
    agent = start_agent(work / "mix")
    time.sleep(MIX_SECONDS)
    stop_agent(agent)
    return list(read_journal(agent.journal))[:MIX_RECORDS]


def kind_of(record: JournalRecord) -> str:
    if len(record.ops) > 1:
        return "group"
    op = record.ops[0]
    return {Append: "append", Put: "put"}.get(type(op), "other")


def apply_direct(ws: Path, writes: diskio.DirectWrites, op: Any) -> None:
    """One operation the default mode's way (diskio: what the agent does without a journal)."""
    if isinstance(op, Put):
        writes.replace(ws / op.path, op.data)
    elif isinstance(op, Append):
        writes.append(ws / op.path, op.data)
    elif isinstance(op, Rename):
        writes.rename(ws / op.src, ws / op.dst)
    elif isinstance(op, Delete):
        writes.unlink(ws / op.path)
    elif isinstance(op, Mkdir):
        (ws / op.path).mkdir(parents=True, exist_ok=True)


def apply_journaled(journal: Journal, op: Any) -> None:
    if isinstance(op, Put):
        journal.put(op.path, op.data)
    elif isinstance(op, Append):
        journal.append(op.path, op.data)
    elif isinstance(op, Rename):
        journal.rename(op.src, op.dst)
    elif isinstance(op, Delete):
        journal.delete(op.path)
    elif isinstance(op, Mkdir):
        journal.mkdir(op.path)


def write_overhead(work: Path) -> dict[str, Any]:
    records = agent_mix(work)
    parents = {str(Path(p).parent) for r in records for op in r.ops
               for p in ([op.src, op.dst] if isinstance(op, Rename) else [op.path])}
    direct_ws = work / "direct"
    shutil.rmtree(direct_ws, ignore_errors=True)
    for parent in parents:  # the agent's directories exist before it writes
        (direct_ws / parent).mkdir(parents=True, exist_ok=True)
    writes = diskio.DirectWrites()
    direct: list[tuple[str, float]] = []
    for record in records:
        started = time.perf_counter()
        for op in record.ops:
            apply_direct(direct_ws, writes, op)
        direct.append((kind_of(record), time.perf_counter() - started))
    writes.close()
    jws, jdir = work / "journaled", work / "journaled-journal"
    for path in (jws, jdir):
        shutil.rmtree(path, ignore_errors=True)
    jws.mkdir(parents=True)
    journaled: list[tuple[str, float]] = []
    with Journal(jdir, jws) as journal:
        for record in records:
            started = time.perf_counter()
            if len(record.ops) == 1:
                apply_journaled(journal, record.ops[0])
            else:
                with journal.transaction():
                    for op in record.ops:
                        apply_journaled(journal, op)
            journaled.append((kind_of(record), time.perf_counter() - started))
        stats = journal.stats
    rows = []
    for kind in ("append", "put", "group", "all"):
        d = [t * 1e3 for k, t in direct if kind in (k, "all")]
        j = [t * 1e3 for k, t in journaled if kind in (k, "all")]
        if not d:
            continue
        sizes = [sum(len(getattr(op, "data", b"")) for op in r.ops) for r in records
                 if kind in (kind_of(r), "all")]
        rows.append({"kind": kind, "n": len(d), "bytes": statistics.mean(sizes),
                     "direct": (pct(d, 50), pct(d, 99)), "journal": (pct(j, 50), pct(j, 99))})
    return {"records": len(records), "rows": rows, "journal_bytes": stats["bytes"],
            "data_bytes": sum(len(getattr(op, "data", b"")) for r in records for op in r.ops)}


# --- 2. storage, and 3. replay ----------------------------------------------------------


@dataclass
class StorageRun:
    label: str
    pace: float
    seconds: float
    backups: list[dict[str, Any]] = field(default_factory=list)
    ships: list[dict[str, Any]] = field(default_factory=list)
    snapshot_bytes: int = 0  # repository growth from the hot backups
    journal_bytes: int = 0  # repository growth from the journal batches
    first_full: int = 0  # the first backup's growth (a full)
    local_journal: int = 0
    records: int = 0
    agent_line: str = ""
    replay: dict[str, Any] = field(default_factory=dict)


def storage_run(work: Path, label: str, seconds: float, scale: float, pace: float,
                measure_replay: bool) -> StorageRun:
    checkpoint, sync = STANDARD_CHECKPOINT / scale, STANDARD_SYNC / scale
    repo = Repo(work / f"repo-{label}")
    extra = ["--turn-pause", str(pace)] if pace else []
    agent = start_agent(work / f"agent-{label}", *extra)
    run = StorageRun(label, pace, seconds)
    try:
        started = time.monotonic()
        next_cp, next_sync = started, started + sync
        while time.monotonic() < started + seconds:
            now = time.monotonic()
            if now >= next_cp:
                before = repo.size()
                backup = hot_backup(repo, agent)
                backup["growth"] = repo.size() - before
                run.backups.append(backup)
                next_cp += checkpoint
            elif now >= next_sync:
                before, upto = repo.size(), durable(agent.journal)
                took = ship(repo, agent.journal, upto)
                run.ships.append({"upto": upto, "seconds": took, "growth": repo.size() - before})
                next_sync += sync
            else:
                time.sleep(max(0.0, min(next_cp, next_sync, started + seconds) - now))
    finally:
        run.agent_line = stop_agent(agent)
    before = repo.size()
    took = ship(repo, agent.journal)  # what the agent wrote since the last ship
    run.ships.append({"upto": durable(agent.journal), "seconds": took,
                      "growth": repo.size() - before})
    run.snapshot_bytes = sum(b["growth"] for b in run.backups)
    run.first_full = run.backups[0]["growth"]
    run.journal_bytes = sum(s["growth"] for s in run.ships)
    run.local_journal = dir_bytes(agent.journal)
    run.records = durable(agent.journal)
    if measure_replay and len(run.backups) >= 2:
        run.replay = replay_rate(work, repo, agent, run.backups)
    return run


def replay_rate(work: Path, repo: Repo, agent: Agent, backups: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """restore --seq N, N one record before the last checkpoint: a whole interval replayed."""
    base, upto = backups[-2], backups[-1]["seq"] - 1
    records = [r for r in read_journal(agent.journal, base["seq"], upto)]
    framed = sum(r.size for r in records)
    data = sum(len(getattr(op, "data", b"")) for r in records for op in r.ops)
    t_seq, t_snap = work / "restore-seq", work / "restore-snap"
    for path in (t_seq, t_snap):
        shutil.rmtree(path, ignore_errors=True)
    _, seq_s = repo.run("restore", "--name", NAME, "--seq", str(upto), "--target", str(t_seq))
    _, snap_s = repo.run("restore", base["id"], "--target", str(t_snap))
    started = time.perf_counter()
    result = replay_into(t_snap, agent.journal, base["seq"], upto)
    engine_s = time.perf_counter() - started
    if result.last_seq != upto:
        raise RuntimeError(f"local replay stopped at {result.last_seq}, not {upto}")
    same = _tree(t_seq) == _tree(t_snap)
    if not same:
        raise RuntimeError(f"restore --seq {upto} differs from the snapshot + local replay")
    extra = max(seq_s - snap_s, 1e-9)
    return {"records": len(records), "framed": framed, "data": data, "upto": upto,
            "base_seq": base["seq"], "seq_s": seq_s, "snap_s": snap_s, "extra_s": extra,
            "engine_s": engine_s}


def _tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = Path(
                dirpath, name).read_bytes()
    return out


# --- 4. data-loss window ------------------------------------------------------------------


def loss_window(work: Path, interval: float, intervals: int) -> dict[str, Any]:
    repo = Repo(work / "repo-loss")
    agent = start_agent(work / "agent-loss")
    ships: list[dict[str, Any]] = []
    try:
        base = hot_backup(repo, agent)
        started = time.monotonic()
        for n in range(1, intervals + 1):
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
            upto = durable(agent.journal)
            begun = time.time()
            took = ship(repo, agent.journal, upto)
            ships.append({"upto": upto, "begun": begun, "done": time.time(), "seconds": took})
    finally:
        stop_agent(agent)
    windows: list[float] = []
    shipped_bytes: list[int] = []
    after = base["seq"]
    for s in ships:
        batch = list(read_journal(agent.journal, after, s["upto"]))
        windows += [s["done"] - r.ts_ns / 1e9 for r in batch]
        shipped_bytes.append(sum(r.size for r in batch))
        after = s["upto"]
    return {"interval": interval, "ships": ships, "records": len(windows),
            "mean": statistics.mean(windows), "worst": max(windows), "p50": pct(windows, 50),
            "p99": pct(windows, 99), "batch_bytes": shipped_bytes}


# --- report ------------------------------------------------------------------------------


def report(args: argparse.Namespace, overhead: dict[str, Any], runs: list[StorageRun],
           loss: dict[str, Any] | None, elapsed: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = shlex.join(["python", "benchmarks/journal.py", *sys.argv[1:]])
    lines = [f"## {now}: journal mode (simulated agent)", "",
             f"- command: `{cmd}` ({elapsed:.0f} s)",
             f"- machine: {', '.join(machine_info())}; work directory on "
             f"{_fs(Path(args.work))}", ""]
    lines += ["### Write overhead per mutation", "",
              f"The agent's own mix: its first {overhead['records']} journal records (a "
              f"{MIX_SECONDS:g} s run flat out), applied directly the default mode's way "
              "(append without fsync; atomic replace = temp file, fsync, rename, fsync of "
              "the directory) and through `Journal` (one record, fdatasync'd, then applied). "
              "ms per record:", ""]
    rows = []
    for r in overhead["rows"]:
        (d50, d99), (j50, j99) = r["direct"], r["journal"]
        rows.append([r["kind"], str(r["n"]), f"{r['bytes']:,.0f}", f"{d50:.3f}", f"{d99:.3f}",
                     f"{j50:.3f}", f"{j99:.3f}", f"{j50 - d50:+.3f}", f"{j99 - d99:+.3f}"])
    lines.append(md_table(["records", "n", "mean data bytes", "direct p50", "direct p99",
                           "journal p50", "journal p99", "overhead p50", "overhead p99"], rows))
    lines += ["", f"Journal bytes written: {mb(overhead['journal_bytes'])} for "
              f"{mb(overhead['data_bytes'])} of data.", ""]
    scale = args.scale
    lines += ["### Storage: journal + snapshots against snapshots alone", "",
              f"Standard profile scaled down {scale:g}x: a hot backup every "
              f"{STANDARD_CHECKPOINT / scale:g} s (5 min), `journal ship` every "
              f"{STANDARD_SYNC / scale:g} s (60 s); each run {args.seconds:g} s, standing for "
              f"{args.seconds * scale / 60:g} min. Growth of one repository attributed to the "
              "backups (the snapshots-alone baseline) and to the journal batches. Steady "
              "state leaves out the first backup (a full).", ""]
    rows = []
    for run in runs:
        total = run.snapshot_bytes + run.journal_bytes
        steady_base = run.snapshot_bytes - run.first_full
        steady = (steady_base + run.journal_bytes) / steady_base if steady_base > 0 else None
        verdict = _budget(total / run.snapshot_bytes)
        turns = run.agent_line.split()[1].removeprefix("turns=")
        rows.append([
            run.label, turns, str(run.records), str(len(run.backups)), str(len(run.ships)),
            mb(run.local_journal), mb(run.first_full), mb(run.snapshot_bytes - run.first_full),
            mb(run.journal_bytes), f"{total / run.snapshot_bytes:.2f}x ({verdict})",
            f"{steady:.2f}x ({_budget(steady)})" if steady else "n/a"])
    lines.append(md_table(["agent", "turns", "records", "backups", "ships", "local journal",
                           "first full", "incrementals", "journal batches",
                           "journal + snapshots / snapshots", "steady state"], rows))
    lines += ["", "Steady state: (incrementals + journal batches) / incrementals. What drives "
              "the ratio is whole-file rewrites: sessions.json is rewritten 2-4 times a turn "
              "and a tool edit rewrites a 1-24 KB note; the journal stores every version "
              "(compressed in its batches), a snapshot only the one at its checkpoint, so the "
              "ratio grows with the turns per checkpoint interval. Journal compaction (prune "
              "after a full snapshot covers it) is not part of these runs.", ""]
    replay = next((r.replay for r in runs if r.replay), None)
    if replay:
        lines += ["### Replay rate", "",
                  f"`restore --seq {replay['upto']}` replays records "
                  f"{replay['base_seq'] + 1}..{replay['upto']} (one checkpoint interval, flat "
                  "out) onto the snapshot before them; the rate is over its extra time "
                  "against restoring that snapshot alone. The engine alone: `replay_into` in "
                  "process from the local journal.", ""]
        n, framed, data = replay["records"], replay["framed"], replay["data"]
        rows = [["restore --seq (command)", f"{replay['seq_s']:.2f}", f"{replay['snap_s']:.2f}",
                 f"{n / replay['extra_s']:,.0f}", f"{framed / replay['extra_s'] / 1e6:.1f}",
                 f"{data / replay['extra_s'] / 1e6:.1f}"],
                ["replay engine", f"{replay['engine_s']:.2f}", "",
                 f"{n / replay['engine_s']:,.0f}", f"{framed / replay['engine_s'] / 1e6:.1f}",
                 f"{data / replay['engine_s'] / 1e6:.1f}"]]
        lines.append(md_table(["", "seconds", "snapshot alone s", "records/s",
                               "journal MB/s", "data MB/s"], rows))
        lines += ["", f"{n:,} records, {mb(framed)} framed, {mb(data)} of data.", ""]
    if loss:
        ships = loss["ships"]
        durations = ", ".join(f"{s['seconds']:.1f}" for s in ships)
        batches = ", ".join(mb(b) for b in loss["batch_bytes"])
        standard = " (the standard incremental sync interval)" if (
            loss["interval"] == STANDARD_SYNC) else ""
        lines += ["### Data-loss window", "",
                  f"The agent flat out, `journal ship` every {loss['interval']:g} s"
                  f"{standard}, {len(ships)} intervals, "
                  f"{loss['records']:,} records: from a record's timestamp to the end of the "
                  "ship that stored it.", ""]
        lines.append(md_table(
            ["interval s", "mean s", "p50 s", "p99 s", "worst s", "ship durations s",
             "batches"],
            [[f"{loss['interval']:g}", f"{loss['mean']:.1f}", f"{loss['p50']:.1f}",
              f"{loss['p99']:.1f}", f"{loss['worst']:.1f}", durations, batches]]))
        lines.append("")
    return "\n".join(lines) + "\n"


def _budget(ratio: float) -> str:
    low, high = BUDGET
    if ratio <= low:
        return "under the 2x-3x budget"
    if ratio <= high:
        return "within the 2x-3x budget"
    return "over the 2x-3x budget"


def _fs(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout
    fields = out.splitlines()[-1].split() if out else []
    return fields[1] if len(fields) > 1 else "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0,
                        help="length of each storage run (default 45)")
    parser.add_argument("--scale", type=float, default=20.0,
                        help="the standard intervals are divided by this (default 20)")
    parser.add_argument("--pace", default="0.3,3",
                        help="seconds between turns of the paced runs, comma-separated "
                             "(default 0.3,3)")
    parser.add_argument("--loss-interval", type=float, default=STANDARD_SYNC)
    parser.add_argument("--loss-intervals", type=int, default=2,
                        help="intervals measured for the loss window (0: skip)")
    parser.add_argument("--work", default="benchmarks/work/journal")
    parser.add_argument("--results", help="append the report to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    print("write overhead ...", file=sys.stderr)
    overhead = write_overhead(work)
    runs = []
    paces = [0.0, *(float(p) for p in args.pace.split(",") if p.strip())]
    for pace in paces:
        label = f"paced {pace:g} s" if pace else "flat out"
        print(f"storage: {label} ...", file=sys.stderr)
        runs.append(storage_run(work, f"{pace:g}", args.seconds, args.scale, pace, not pace))
        runs[-1].label = label
    loss = None
    if args.loss_intervals:
        print("data-loss window ...", file=sys.stderr)
        loss = loss_window(work, args.loss_interval, args.loss_intervals)
    text = report(args, overhead, runs, loss, time.monotonic() - started)
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
