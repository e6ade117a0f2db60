"""cleancut's hot backup of a real OpenClaw gateway against `openclaw backup create`, in one run.

Both back up the same gateway under the same load (clients sending turns flat out),
alternately, N times each. Per backup: the time users are refused (cleancut: from the
suspension's prepare to its resume, split into the gateway's own drain and cleancut's
pause after `ready`; `openclaw backup` does not stop admission), wall and CPU time,
peak memory, bytes stored (cleancut: added to the repository; openclaw: the archive,
always a full), and whether the copy is one consistent cut: every database passes
integrity_check (Node 24's SQLite) and no session ends in a user message without its
reply.

Runs as root: the gateway, its fake model, the clients and both backup tools run in a
network namespace that has only loopback. Appends a section to RESULTS.md.

    python benchmarks/openclaw.py [--rounds 10] [--clients 3] [--warmup-turns 300]
                                  [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openclaw_gateway import (  # noqa: E402 - the tests' equipment
    TOKEN,
    Gateway,
    NetNamespace,
    databases,
    integrity,
    runtime,
    transcripts,
)
from test_openclaw_hot import EXCLUDES, Load  # noqa: E402

PASSWORD = "benchmark passphrase"


class Meter:
    """Per-command CPU and peak memory, from wait4 on the child."""

    @staticmethod
    def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None
            ) -> tuple[int, str, str, float, float, float]:
        with tempfile.TemporaryFile(mode="w+") as out_f, \
                tempfile.TemporaryFile(mode="w+") as err_f:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out_f, stderr=err_f)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out_f.seek(0)
            err_f.seek(0)
            cpu = usage.ru_utime + usage.ru_stime
            return (proc.returncode, out_f.read(), err_f.read(), wall, cpu,
                    usage.ru_maxrss / 1024)


def unanswered_anywhere(root: Path) -> list[str]:
    found = []
    for db in sorted(root.rglob("openclaw-agent.sqlite")):
        for session, messages in transcripts(db).items():
            if messages and messages[-1][0] == "user":
                found.append(session)
    return found


def consistent(rt: Path, root: Path) -> tuple[bool, str]:
    dbs = databases(root)
    if not any(p.name == "openclaw-agent.sqlite" for p in dbs):
        return False, "no agent database"
    bad = [str(p) for p, r in integrity(rt, dbs).items() if r != ["ok"]]
    if bad:
        return False, f"integrity: {bad[:2]}"
    open_turns = unanswered_anywhere(root)
    if open_turns:
        return False, f"{len(open_turns)} unanswered"
    return True, ""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=3)
    # History before the first backup: an archive holds all of it, an incremental only
    # what changed, so a gateway with no history would compare nothing.
    ap.add_argument("--warmup-turns", type=int, default=300)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--chunk", default=None, metavar="MIN,AVG,MAX",
                    help="cleancut init's chunk sizes, e.g. 4KiB,16KiB,64KiB (default: init's)")
    args = ap.parse_args()
    rt = runtime()
    work = Path(tempfile.mkdtemp(prefix="cleancut-bench-openclaw-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANCUT_")} | {
        "CLEANCUT_REPO": str(work / "repo"), "CLEANCUT_PASSWORD": PASSWORD,
        "CLEANCUT_CACHE_DIR": str(work / "cache"), "OPENCLAW_GATEWAY_TOKEN": TOKEN,
    }
    cleancut = [sys.executable, "-m", "cleancut.cli.main"]
    init = [*cleancut, "init"]
    if args.chunk:
        low, avg, high = args.chunk.split(",")
        init += ["--chunk-min", low, "--chunk-avg", avg, "--chunk-max", high]
    subprocess.run(init, env=env, check=True, capture_output=True)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    (work / "archives").mkdir()
    with NetNamespace():
        gw = Gateway(rt, work / "gateway")
        gw.start()
        oc_env = gw.env()
        try:
            with Load(gw, args.clients, limit_s=3600) as load:
                while min(load.served) < 1 or sum(load.served) < args.warmup_turns:
                    time.sleep(0.2)
                for i in range(args.rounds):
                    cmd = [*cleancut, "backup", str(gw.root), "--name", "gateway",
                           "--agent", gw.address, "--json"]
                    for pattern in EXCLUDES:
                        cmd += ["--exclude", pattern]
                    code, out, err, wall, cpu, rss = Meter.run(cmd, env)
                    if code != 0:
                        raise SystemExit(f"cleancut backup failed: {err}")
                    s = json.loads(out)
                    steps = s["steps_ms"]
                    ours.append({
                        "snapshot": s["snapshot_id"], "kind": s["kind"],
                        "drain_ms": steps["quiesce"], "pause_ms": s["pause_ms"],
                        "wall": wall, "cpu": cpu, "rss": rss, "bytes": s["bytes_added"],
                    })
                    before = set((work / "archives").iterdir())
                    code, out, err, wall, cpu, rss = Meter.run(
                        gw.openclaw("backup", "create", "--output", str(work / "archives"),
                                    "--json"), oc_env, cwd=work)
                    if code != 0:
                        raise SystemExit(f"openclaw backup create failed: {err[-2000:]}")
                    made = sorted(set((work / "archives").iterdir()) - before)
                    archive = next(p for p in made if p.name.endswith(".tar.gz"))
                    theirs.append({"archive": archive, "wall": wall, "cpu": cpu, "rss": rss,
                                   "bytes": archive.stat().st_size})
                    print(f"round {i + 1}: cleancut {ours[-1]['wall']:.1f}s "
                          f"openclaw {wall:.1f}s", flush=True)
            served = sum(load.served)
        finally:
            gw.stop()
    for i, o in enumerate(ours):
        target = work / f"restore-{i}"
        subprocess.run([*cleancut, "restore", o["snapshot"], "--target", str(target)],
                       env=env, check=True, capture_output=True)
        o["consistent"], o["why"] = consistent(rt, target)
        shutil.rmtree(target)
    for i, t in enumerate(theirs):
        target = work / f"extract-{i}"
        with tarfile.open(t["archive"]) as tar:
            tar.extractall(target, filter="data")
        t["consistent"], t["why"] = consistent(rt, target)
        shutil.rmtree(target)
    report = render(args, ours, theirs, served)
    print(report)
    if args.results:
        with open(args.results, "a") as f:
            f.write("\n" + report)
    shutil.rmtree(work, ignore_errors=True)


def render(args: argparse.Namespace, ours: list[dict[str, Any]],
           theirs: list[dict[str, Any]], served: int) -> str:
    drain = [o["drain_ms"] for o in ours]
    pause = [o["pause_ms"] for o in ours]
    refused = [d + p for d, p in zip(drain, pause, strict=True)]
    inc = [o["bytes"] for o in ours[1:]] or [0]
    arch = [t["bytes"] for t in theirs]

    def row(name: str, items: list[dict[str, Any]], users: str, stored: str) -> str:
        walls = [x["wall"] for x in items]
        cpus = [x["cpu"] for x in items]
        rss = max(x["rss"] for x in items)
        ok = sum(1 for x in items if x["consistent"])
        return (f"| {name} | {users} | {statistics.median(walls):.2f} / {max(walls):.2f} | "
                f"{statistics.median(cpus):.2f} | {rss:.0f} | {stored} | {ok} of {len(items)} |")

    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: OpenClaw gateway, "
        f"cleancut vs openclaw backup create",
        "",
        f"- command: `python benchmarks/openclaw.py --rounds {args.rounds} "
        f"--clients {args.clients} --warmup-turns {args.warmup_turns}"
        + (f" --chunk {args.chunk}`" if args.chunk else "`")
        + f" (cleancut's chunks: {args.chunk or 'init defaults, 256KiB,1MiB,4MiB'})",
        f"- machine: nproc {os.cpu_count()}, kernel {platform.release()}, "
        f"Python {platform.python_version()}; openclaw 2026.9.6 on Node 24, fake model on "
        "loopback, all in a loopback-only network namespace",
        f"- load: {args.clients} clients sending turns flat out ({served} turns served "
        f"during the run, {args.warmup_turns} before the first backup); the two tools "
        "alternate on the same gateway",
        "- users wait: cleancut refuses turns (HTTP 503) from the suspension's prepare to "
        "its resume = the gateway's drain + cleancut's pause after `ready`; "
        "`openclaw backup create` does not stop admission",
        "- consistent cut: every database passes integrity_check (Node 24's SQLite) and no "
        "session ends in an unanswered user message (cleancut: the restored snapshot; "
        "openclaw: the extracted archive)",
        "",
        f"cleancut: drain p50 {statistics.median(drain):.0f} ms, p99 {pct(drain, 0.99):.0f} ms; "
        f"pause after ready p50 {statistics.median(pause):.0f} ms, "
        f"p99 {pct(pause, 0.99):.0f} ms; users refused p99 {pct(refused, 0.99):.0f} ms",
        "",
        "| tool | users wait p50 / p99 | wall s p50 / max | CPU s p50 | peak RSS MiB "
        "| bytes stored per backup after the first | consistent cuts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("cleancut", ours,
            f"{statistics.median(refused):.0f} / {pct(refused, 0.99):.0f} ms",
            f"{statistics.median(inc):,.0f} (p50 added)"),
        row("openclaw backup create", theirs, "0 (never refuses)",
            f"{statistics.median(arch):,.0f} (archive)"),
        "",
        f"Targets: pause p99 <= drain + 50 ms: pause p99 {pct(pause, 0.99):.0f} ms "
        f"({'met' if pct(pause, 0.99) <= 50 else 'not met'}); bytes per incremental <= 1/10 "
        f"of an archive: {statistics.median(inc) / statistics.median(arch):.3f} "
        f"({'met' if statistics.median(inc) * 10 <= statistics.median(arch) else 'not met'}).",
        "",
    ]
    bad = [f"openclaw #{i + 1}: {t['why']}" for i, t in enumerate(theirs) if not t["consistent"]]
    bad += [f"cleancut #{i + 1}: {o['why']}" for i, o in enumerate(ours) if not o["consistent"]]
    if bad:
        lines += ["Inconsistent copies: " + "; ".join(bad), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
