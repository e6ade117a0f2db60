#!/usr/bin/env python3
"""Benchmark the cost of being backup-ready for a LangGraph agent, and its pause per backup.

The agent is the documented example (docs/examples/langgraph_agent.py): several threads
running flat out, each turn a model call (langchain_core's fake chat model), a tools step
(a payment through the ledger to the simulated service, a memory into the sqlite-vec
index) and a closing model call, checkpointed in SQLite.

1. Turns per second, with the adapter (BackupReady + ControlServer) and without it
   (--plain: the bare compiled graph, LangGraph's default durability; and the bare graph
   with durability="sync", which the adapter imposes, so the gate's own cost shows),
   --turns per thread, alternating the modes for --rounds rounds, the order rotated each
   round (the machine is shared: read the medians).
2. The pause per backup: the adapted agent running flat out, --backups hot backups back to
   back (`cleancut backup ROOT --agent unix:SOCK --json`); pause_ms and the quiesce and
   flush steps, p50 / p99 / max, once with the default flush (the WALs stay; cleancut pins
   them) and once with --truncate-wal (flush moves each WAL into its database file).

Percentiles are nearest-rank. The load average is read before and after.

Usage:
    python benchmarks/langgraph.py [--threads 4] [--turns 40] [--rounds 3] [--backups 20]
                                   [--work benchmarks/work/langgraph]
                                   [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "docs" / "examples" / "langgraph_agent.py"
ENV = os.environ | {"CLEANCUT_PASSWORD": "bench", "LANGSMITH_TRACING": "false"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def turns_per_second(work: Path, mode: str, threads: int, turns: int, n: int) -> float:
    root = work / f"tps-{mode}-{n}"
    shutil.rmtree(root, ignore_errors=True)
    extra = {"plain": ["--plain"], "plain-sync": ["--plain", "--durability", "sync"],
             "adapted": ["--socket", str(root / "agent.sock")]}[mode]
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "run", "--root", str(root / "ws"),
         "--service", str(root / "svc"), "--threads", str(threads), "--turns", str(turns),
         *extra],
        capture_output=True, text=True, check=True, env=ENV,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("finished"))
    done = json.loads(line.split(" ", 1)[1])
    return float(done["turns"]) / float(done["seconds"])


def pauses(work: Path, threads: int, backups: int, truncate: bool) -> dict[str, list[float]]:
    root = work / f"pause-{'truncate' if truncate else 'pinned'}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = ENV | {"CLEANCUT_REPO": str(root / "repo"), "CLEANCUT_CACHE_DIR": str(root / "cache")}
    cli = [sys.executable, "-m", "cleancut.cli.main"]
    subprocess.run([*cli, "init", "--kdf-memory", "8MiB", "--kdf-iterations", "1"],
                   check=True, env=env, capture_output=True)
    sock = root / "agent.sock"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "run", "--root", str(root / "ws"), "--service",
         str(root / "svc"), "--socket", str(sock), "--threads", str(threads),
         *(["--truncate-wal"] if truncate else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    found: dict[str, list[float]] = {"pause": [], "quiesce": [], "flush": [], "bytes": []}
    try:
        for _ in range(backups):
            out = subprocess.run(
                [*cli, "backup", str(root / "ws"), "--name", "lg", "--agent", f"unix:{sock}",
                 "--json"], capture_output=True, text=True, check=True, env=env).stdout
            summary = json.loads(out)
            assert summary["consistency"] == "quiesced", summary
            found["pause"].append(float(summary["pause_ms"]))
            found["quiesce"].append(float(summary["steps_ms"]["quiesce"]))
            found["flush"].append(float(summary["steps_ms"]["flush"]))
            found["bytes"].append(float(summary["bytes_total"]))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backups", type=int, default=20)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "langgraph")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)

    tps: dict[str, list[float]] = {"plain": [], "plain-sync": [], "adapted": []}
    modes = list(tps)
    for n in range(args.rounds):
        for mode in modes[n % len(modes):] + modes[:n % len(modes)]:  # no mode always last
            tps[mode].append(turns_per_second(args.work, mode, args.threads, args.turns, n))
            print(mode, round(tps[mode][-1], 1), "turns/s", flush=True)
    runs = {truncate: pauses(args.work, args.threads, args.backups, truncate)
            for truncate in (False, True)}
    load_after = os.getloadavg()

    plain, adapted = statistics.median(tps["plain"]), statistics.median(tps["adapted"])
    plain_sync = statistics.median(tps["plain-sync"])
    lines = [
        f"## LangGraph agent — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `python benchmarks/langgraph.py --threads {args.threads} --turns "
        f"{args.turns} --rounds {args.rounds} --backups {args.backups}`",
        f"- machine: nproc {os.cpu_count()}, Python {sys.version.split()[0]}; load average "
        f"before {load_before[0]:.1f} / {load_before[1]:.1f}, after {load_after[0]:.1f} / "
        f"{load_after[1]:.1f} (1 / 5 min)",
        f"- agent: docs/examples/langgraph_agent.py, {args.threads} threads flat out, fake "
        "chat model, SqliteSaver, sqlite-vec index, ledger-wrapped payments",
        "",
        "| mode | turns/s per round | median |",
        "| --- | --- | --- |",
        f"| without the adapter (--plain: LangGraph's default durability) "
        f"| {', '.join(f'{x:.1f}' for x in tps['plain'])} | {plain:.1f} |",
        f"| without the adapter, durability='sync' (--plain --durability sync) "
        f"| {', '.join(f'{x:.1f}' for x in tps['plain-sync'])} | {plain_sync:.1f} |",
        f"| with the adapter | {', '.join(f'{x:.1f}' for x in tps['adapted'])} "
        f"| {adapted:.1f} |",
        "",
        f"With the adapter: {adapted / plain:.2f}x the turns per second of the bare graph, "
        f"{adapted / plain_sync:.2f}x the bare graph with durability='sync' (the adapter's "
        "own cost: the turn gate at each step).",
        "",
        f"Pause per backup ({args.backups} hot backups back to back, agent flat out; ms, "
        "p50 / p99 / max):",
        "",
        "| flush | pause | quiesce step | flush step | workspace at the end |",
        "| --- | --- | --- | --- | --- |",
    ]
    for truncate, found in runs.items():
        name = "truncate the WALs (--truncate-wal)" if truncate else "default (WALs pinned)"
        cells = [
            " / ".join(f"{pct(found[k], q):.1f}" for q in (50, 99, 100))
            for k in ("pause", "quiesce", "flush")
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {found['bytes'][-1] / 1e6:.1f} MB |")
    lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.results, "a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
