#!/usr/bin/env python3
"""Benchmark a long delta chain: cost per incremental, and restoring the chain's end.

Builds a chain of N incrementals (default 1,000) on a generated agent workspace, one small
change each (a transcript line, sessions.json, now and then a daily note), one minute apart
on an injected clock, and reports:

- time and bytes added per incremental (p50, p95, max);
- total repository growth against the sum of the bytes changed;
- the time to restore the last incremental (chain replay) against the time to restore a
  full snapshot of the same tree. Target: at most 1.2x (issue 14).

It drives cleancut's library in-process, so what is timed is the backup itself, not N
interpreter start-ups. Usage:

    python benchmarks/chain.py [--size 100M] [--length 1000] [--work DIR] [--results FILE]
    python benchmarks/chain.py --restore-only [--rounds 3] --work DIR   # a DIR built before

`--restore-only` reuses a work directory a full run left behind: it restores the chain's
end and the equal full alternately, the page cache dropped before each, and prints the
median of each and their ratio (an A/B of restore changes without rebuilding the chain).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from run import drop_caches  # noqa: E402  (the same cache drop as the tool comparison)

from cleancut.archiver.backup import Archiver, BackupOptions  # noqa: E402
from cleancut.backend.local import LocalBackend  # noqa: E402
from cleancut.repository.keys import KdfParams  # noqa: E402
from cleancut.repository.repository import Repository, init_repository  # noqa: E402
from cleancut.restorer.restore import Restorer  # noqa: E402

PASSWORD = "bench-password-not-secret"
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def set_clock(minutes: float) -> None:
    moment = T0 + dt.timedelta(minutes=minutes)
    os.environ["CLEANCUT_NOW"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def small_change(root: Path, i: int) -> int:
    """One agent turn: a transcript line, sessions.json rewritten, a note every 10 turns."""
    transcripts = sorted(root.rglob("*.jsonl"))
    line = f'{{"type":"message","role":"user","turn":{i},"text":"benchmark turn {i}"}}\n'
    with transcripts[i % len(transcripts)].open("a") as f:
        f.write(line)
    changed = len(line)
    sessions = root / "sessions-bench.json"
    body = f'{{"turns": {i}, "updatedAt": {1_700_000_000 + i}}}\n'
    sessions.write_text(body)
    changed += len(body)
    if i % 10 == 0:
        note = root / "bench-notes" / f"note-{i:05d}.md"
        note.parent.mkdir(exist_ok=True)
        text = f"# turn {i}\n" + "remember this detail. " * 20 + "\n"
        note.write_text(text)
        changed += len(text)
    return changed


def backup(repo: Repository, src: Path, force_full: bool = False) -> dict[str, object]:
    options = BackupOptions(name="agent", force_full=force_full)
    result = Archiver(repo, src, options).run()
    return result.summary()


def timed_restore(repo: Repository, snapshot_id: str, target: Path, drop: bool) -> float:
    shutil.rmtree(target, ignore_errors=True)
    if drop:
        drop_caches()
    snap = repo.load_snapshot(snapshot_id)
    start = time.perf_counter()
    result = Restorer(repo, snap, target).run()
    elapsed = time.perf_counter() - start
    if result.damaged or result.errors or result.refused:
        raise SystemExit(f"restore of {snapshot_id[:12]} failed: {result}")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def restore_only(work: Path, rounds: int) -> int:
    """Time restoring the chain's end and the newest full of a work directory built before,
    alternately, `rounds` times each; print every time, the medians and their ratio."""
    os.environ["CLEANCUT_CACHE_DIR"] = str(work / "cache")
    repo = Repository.open(LocalBackend(work / "repo"), PASSWORD, work / "cache")
    snaps = repo.snapshots()
    end = max((s for s in snaps if not s.is_full), key=lambda s: s.seq)
    full = max((s for s in snaps if s.is_full), key=lambda s: s.time)
    times: dict[str, list[float]] = {"chain": [], "full": []}
    for rnd in range(rounds):
        order = [("chain", end), ("full", full)]
        for label, snap in order if rnd % 2 == 0 else reversed(order):
            seconds = timed_restore(repo, snap.id, work / f"r-{label}", drop_caches())
            times[label].append(seconds)
            print(
                f"round {rnd} {label} (seq {snap.seq}): {seconds:.3f} s, "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    chain_s, full_s = statistics.median(times["chain"]), statistics.median(times["full"])
    print(
        f"median chain {chain_s:.3f} s, full {full_s:.3f} s: {chain_s / full_s:.2f}x "
        "(target <= 1.2x, issue 14)"
    )
    repo.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100M")
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "chain")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--restore-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.restore_only:
        return restore_only(args.work.absolute(), args.rounds)

    work = args.work.absolute()
    shutil.rmtree(work, ignore_errors=True)
    src = work / "workspace"
    src.mkdir(parents=True)
    started = time.perf_counter()
    corpus.generate(src, corpus.parse_size(args.size), seed=1)
    print(f"workspace: {dir_bytes(src):,} bytes in {time.perf_counter() - started:.1f}s")
    os.environ["CLEANCUT_CACHE_DIR"] = str(work / "cache")
    backend = LocalBackend(work / "repo")
    init_repository(backend, PASSWORD, kdf=KdfParams(memory_kib=8 * 1024, iterations=1))
    repo = Repository.open(backend, PASSWORD, work / "cache")

    set_clock(0)
    full = backup(repo, src)
    assert full["kind"] == "full"
    repo_start = dir_bytes(work / "repo")
    times, added, changed_total = [], [], 0
    last = full
    for i in range(1, args.length + 1):
        changed_total += small_change(src, i)
        set_clock(i * 0.5)  # 30 s apart: 1,000 incrementals stay within the 24 h full age
        start = time.perf_counter()
        last = backup(repo, src)
        times.append(time.perf_counter() - start)
        added.append(float(last["bytes_added"]))  # type: ignore[arg-type]
        if last["kind"] != "incremental" or last["seq"] != i:
            raise SystemExit(f"step {i}: expected incremental seq {i}, got {last}")
        if i % 100 == 0:
            print(f"  seq {i}: {statistics.mean(times[-100:]) * 1000:.0f} ms per incremental")
    growth = dir_bytes(work / "repo") - repo_start

    set_clock(args.length * 0.5 + 1)
    equal_full = backup(repo, src, force_full=True)
    dropped = drop_caches()
    chain_s = min(
        timed_restore(repo, str(last["snapshot_id"]), work / "r-chain", dropped) for _ in range(2)
    )
    full_s = min(
        timed_restore(repo, str(equal_full["snapshot_id"]), work / "r-full", dropped)
        for _ in range(2)
    )
    ratio = chain_s / full_s
    restored = dir_bytes(work / "r-chain")
    if restored != dir_bytes(src) or restored != dir_bytes(work / "r-full"):
        raise SystemExit("restored trees differ from the workspace")

    ms = [t * 1000 for t in times]
    verdict = "met" if ratio <= 1.2 else "not met"
    rows = [
        ("incrementals", f"{args.length}"),
        ("workspace", f"{dir_bytes(src):,} bytes"),
        ("time per incremental p50 / p95 / max",
         f"{pct(ms, .5):.0f} / {pct(ms, .95):.0f} / {max(ms):.0f} ms"),
        ("bytes added per incremental p50 / p95 / max",
         f"{pct(added, .5):,.0f} / {pct(added, .95):,.0f} / {max(added):,.0f}"),
        ("sum of bytes changed", f"{changed_total:,}"),
        ("repository growth over the chain",
         f"{growth:,} ({growth / changed_total:.2f}x the change)"),
        ("restore of seq N (chain replay)", f"{chain_s:.2f} s"),
        ("restore of an equal full", f"{full_s:.2f} s"),
        ("chain / full restore time", f"{ratio:.2f}x (target <= 1.2x, issue 14: {verdict})"),
    ]  # fmt: skip
    table = "| metric | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    cache_note = "page cache dropped before each restore" if dropped else "warm page cache"
    title = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: chain of {args.length} incrementals"
    report = (
        f"\n## {title}\n\n"
        f"- command: `python benchmarks/chain.py {' '.join(argv or sys.argv[1:])}`\n"
        f"- machine: nproc {os.cpu_count()}, Python {platform.python_version()}; {cache_note};"
        " best of two restores each\n\n" + table + "\n"
    )
    print(report)
    if args.results:
        with args.results.open("a") as f:
            f.write(report)
    repo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
