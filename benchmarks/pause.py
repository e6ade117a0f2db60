#!/usr/bin/env python3
"""Benchmark the pause a hot backup imposes on a running agent, against stop-copy-start.

Issue: "a workspace of about 1 GiB in about 10,000 files, with about 10 MiB changed between
backups, and the simulated agent running. Report pause p50 / p99 / max over at least 30
backups, and the same for a naive stop-copy-start baseline. Target: pause p99 at most 250 ms,
and no growth of the pause with workspace size when the change stays the same."

For each size in --sizes, in a fresh directory:
  1. a new repository (`cleancut init`, cheap KDF) and a new simulated agent
     (`python -m cleancut.testing.simulated run`), running flat out in its own process group;
  2. bulk attachments of that size (`bulk.make_bulk`) in the agent's workspace/attachments,
     10,000 files for every size (only the bytes grow) unless --scale-files;
  3. one warm-up hot backup (the first, full one: staging starts empty), reported apart;
  4. --backups rounds of `bulk.churn` (10 MiB) + `cleancut backup ROOT --agent unix:SOCK
     --staging DIR --json`, collecting pause_ms, steps_ms and the capture's stage stats;
  5. --baseline-rounds rounds of churn + SIGSTOP the agent's process group, `cp -a` the whole
     agent root to a fresh directory, SIGCONT (pause = SIGSTOP to SIGCONT);
  6. stop the agent (SIGTERM; its "stopped turns=… writes=…" line), restore the last hot
     snapshot and run the invariant checker on it: a short pause that tears the cut is
     worthless.

With --fs btrfs, each size's work directory is a btrfs filesystem the benchmark makes (a
sparse image, mkfs.btrfs, a loop mount; root and btrfs-progs needed) and the agent root is a
subvolume on it, so the hot backup's in-pause work is one read-only snapshot (decision 0008).
The report then also shows cleancut's share of the pause: the pause minus the agent's own
steps inside it (flush, and the horizon's wait for its actions to settle).

Every round starts with a sync(2), outside the timing (--no-sync to skip), so writeback left
from the previous round (a whole-workspace copy, for the baseline) is not charged to the next.
The workspace grows while the benchmark runs: `churn` appends and adds files, and the agent's
own transcripts and ledger grow; the report shows the tree at the end.

Percentiles are nearest-rank: the value at rank ceil(q/100 * n) of the n sorted samples, so
with 30 samples p99 is the largest sample (rank 30) and p50 the 15th.

Usage:
    python benchmarks/pause.py [--sizes 256M,1G,4G] [--backups 30] [--baseline-rounds 30]
                               [--fs native|btrfs]
                               [--work benchmarks/work/pause] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import select
import shlex
import shutil
import signal
import sqlite3
import stat
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402  (sibling module; benchmarks/ is not a package)
from pause_cases import (  # noqa: E402  (sibling module: the matrix's cases and workspaces)
    Case,
    LiveDb,
    Transcripts,
    case_names,
    make_sparse_bulk,
    matrix,
    mount_image,
    unmount_image,
)
from run import (  # noqa: E402  (the store benchmark's process and report helpers)
    PASSWORD,
    ToolError,
    _f,
    cleancut_command,
    find_restored_root,
    machine_info,
    md_table,
    parse_json,
    quick,
    run_step,
)

from cleancut.testing.simulated.bulk import churn, make_bulk  # noqa: E402
from cleancut.testing.simulated.checker import check_workspace  # noqa: E402

HERE = Path(__file__).resolve().parent
MIB, GIB = 1 << 20, 1 << 30
TARGET_P99_MS = 250.0
# "No growth with size": the p50 at the largest size may exceed the p50 at the smallest by
# at most this factor or this many ms, whichever is larger (the machine is shared and noisy).
GROWTH_FACTOR, GROWTH_SLACK_MS = 1.25, 20.0
IN_PAUSE_STEPS = ("flush", "horizon", "capture")  # pause_ms = quiesce ack .. resume
# cleancut's share of the pause: the pause minus the steps that wait for the agent (its
# flush, and the horizon: in-flight actions settling, then the final flush). What is left
# is the in-pause capture and the lease proof (a `renew`) before resume.
AGENT_STEPS = ("flush", "horizon")
# Issue 13's target for cleancut's share, p99, on ext4 at 10,000 files.
TARGET_SHARE_P99_MS = 50.0
HOT_ARGS = ("--quiesce-timeout", "10s", "--horizon", "2s")
# Per size: agent root + staging + repository + one baseline copy + one restore, all ~size.
DISK_FACTOR = 5.2


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the sorted sample at rank ceil(q/100 * n) (1-based)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def human(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def size_label(n: int) -> str:
    for unit, div in (("G", GIB), ("M", MIB), ("K", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding `path` (longest mount-point prefix)."""
    path = path.resolve()
    best, kind = "", "unknown"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (path == Path(mnt) or Path(mnt) in path.parents) and len(mnt) > len(best):
            best, kind = mnt, parts[2]
    return kind


def tree_stats(root: Path, skip: str | None = None) -> tuple[int, int, int]:
    """(regular files, directories, bytes) under root, leaving out directories named `skip`."""
    files = ndirs = nbytes = 0
    for top, dirs, names in os.walk(root):
        if skip is not None:
            dirs[:] = [d for d in dirs if d != skip]
        ndirs += len(dirs)
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if stat.S_ISREG(st.st_mode):
                    files += 1
                    nbytes += st.st_size
    return files, ndirs, nbytes


# --------------------------------------------------------------------------- the agent


@dataclass
class Agent:
    root: Path
    socket: Path
    oracle: Path
    proc: subprocess.Popen[str]
    stopped: str | None = None

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def seq(self) -> int:
        """The agent's last write sequence number (the oracle records every write)."""
        try:
            with open(self.oracle, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - (256 << 10)))
                tail = f.read()
        except OSError:
            return 0
        best = 0
        for line in tail.splitlines()[1:] or tail.splitlines():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                best = max(best, int(json.loads(line).get("s", 0)))
        return best


def start_agent(d: Path, seed: int) -> Agent:
    root, sock, oracle = d / "agent", d / "agent.sock", d / "agent.oracle"
    err = open(d / "logs" / "agent.err", "wb")  # noqa: SIM115  (the child keeps it)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cleancut.testing.simulated",
            "run",
            "--root",
            str(root),
            "--socket",
            str(sock),
            "--oracle",
            str(oracle),
            "--seed",
            str(seed),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        start_new_session=True,  # its own process group: the baseline stops all of it
    )
    err.close()
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("ready"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        tail = (d / "logs" / "agent.err").read_text(errors="replace")[-2000:]
        raise ToolError(f"simulated agent did not start: {line!r}\n{tail}")
    return Agent(root, sock, oracle, proc)


def stop_agent(agent: Agent) -> str:
    """SIGTERM (after a SIGCONT, in case a baseline round was interrupted), then SIGKILL."""
    proc, out = agent.proc, ""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            out += "\n(killed: no clean stop within 30 s)"
    elif proc.stdout is not None:
        out = proc.stdout.read()
    stopped = [ln for ln in out.splitlines() if ln.startswith("stopped")]
    agent.stopped = stopped[-1] if stopped else f"no stop line (exit {proc.returncode})"
    return agent.stopped


# --------------------------------------------------------------------------- one size


@dataclass
class SizeRun:
    size: int
    files: int
    dir: Path
    case: Case | None = None  # what the run's workspace holds (None: a failed --sizes run)
    hot: list[dict[str, Any]] = field(default_factory=list)  # successful measured backups
    hot_failed: list[str] = field(default_factory=list)
    warmup: dict[str, Any] | None = None
    baseline_ms: list[float] = field(default_factory=list)
    baseline_failed: list[str] = field(default_factory=list)
    baseline_bytes: int = 0
    throughput: dict[str, float] = field(default_factory=dict)  # phase -> agent writes/s
    load: list[float] = field(default_factory=list)  # 1-min load average before each round
    workspace: tuple[int, int, int] = (0, 0, 0)  # files, dirs, bytes of the agent root
    agent_state: tuple[int, int, int] = (0, 0, 0)  # outside attachments: the agent's own
    bulk_s: float = 0.0
    stopped: str = ""
    check: str = "not run"
    error: str | None = None
    baseline_rounds: int = 0
    mounted: Path | None = None  # --fs ext4/btrfs: the image mounted on `dir`
    setup_s: dict[str, float] = field(default_factory=dict)  # workspace part -> seconds

    @property
    def label(self) -> str:
        if self.case is None or self.case.name.startswith("size-"):
            return size_label(self.size)
        return self.case.label


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cc = cleancut_command(args.cleancut)
        self.work = args.work.resolve()

    def env(self, d: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "CLEANCUT_CONFIG",
                "CLEANCUT_NOW",
                "CLEANCUT_PASSWORD_FILE",
                "CLEANCUT_PASSWORD_COMMAND",
            )
        }
        env.update(
            CLEANCUT_REPO=str(d / "repo"),
            CLEANCUT_PASSWORD=PASSWORD,
            CLEANCUT_CACHE_DIR=str(d / "cache"),
        )
        return env

    def hot_backup(self, run: SizeRun, agent: Agent, label: str) -> dict[str, Any]:
        """One `cleancut backup --agent`; raises ToolError on a non-zero exit."""
        d = run.dir
        cmd = [
            *self.cc, "backup", str(agent.root), "--name", "agent",
            "--agent", agent.address, "--staging", str(d / "staging"), *HOT_ARGS,
            "--json", "--quiet",
        ]  # fmt: skip
        step = run_step(cmd, self.env(d), d / "logs" / label, cwd=d, timeout=3600)
        summary = parse_json(step.stdout)
        if not isinstance(summary, dict):
            raise ToolError(f"{label}: stdout is not one JSON object: {step.stdout[:300]!r}")
        capture = summary.get("capture") or {}
        strategy = (capture.get("strategy") or {}).get("capture")
        stage = capture.get("stage") or {}
        if strategy == "btrfs-snapshot":  # its staging pass read the snapshot after resume
            after, stage = stage, {k: 0 for k, v in stage.items() if isinstance(v, int | float)}
        else:
            after = {}
        return {
            "label": label,
            "pause_ms": summary.get("pause_ms"),
            "steps_ms": summary.get("steps_ms") or {},
            "stage": stage,  # what the pause did
            "stage_after_resume": after,
            "strategy": capture.get("strategy") or {},
            "prepare": capture.get("prepare") or {},
            "consistency": summary.get("consistency"),
            "capture": strategy,
            "horizon_mode": capture.get("horizon_mode"),
            "quiesce_missed": summary.get("quiesce_missed"),
            "kind": summary.get("kind"),
            "snapshot_id": summary.get("snapshot_id"),
            "inflight": [a.get("key") for a in summary.get("inflight") or []],
            "warnings": summary.get("warnings") or [],
            "wall_s": step.seconds,
            "peak_rss": step.peak_rss,
        }

    def run_case(self, case: Case, index: int) -> SizeRun:
        a = self.args
        d = self.work / (case.name if case.fs == "native" else f"{case.fs}-{case.name}")
        run = SizeRun(case.bytes, case.files, d, case=case)
        rounds = a.baseline_rounds[index]
        run.baseline_rounds = rounds
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        need = (
            DISK_FACTOR * (case.disk_bytes() if case.sparse else case.bytes)
            + (case.bytes * 2 if case.sparse else 0)  # staging and restore may fill the holes
            # Each copy of a sparse file still takes a block for its header (agent root,
            # staging, baseline copy, restore): 1.6 GB at 100,000 files, which filled the
            # 100k-file image of a 30-backup run.
            + (case.files * 4096 * 4 if case.sparse else 0)
        )
        free = shutil.disk_usage(d).free
        if free < need:
            run.error = f"not enough disk: {human(free)} free, need ~{human(need)}"
            print(f"!! {run.error}", flush=True)
            return run
        if case.fs in ("ext4", "btrfs"):
            try:
                run.mounted = mount_image(d, int(need) + 2 * GIB, case.fs)
            except RuntimeError as e:
                raise ToolError(str(e)) from e
        try:
            return self._run_mounted(run, index)
        finally:
            if run.mounted is not None:
                unmount_image(d, run.mounted)

    def _run_mounted(self, run: SizeRun, index: int) -> SizeRun:
        a, d, files = self.args, run.dir, run.files
        (d / "logs").mkdir(parents=True)
        print(f"== {run.label}: {files:,} bulk files, work {d}", flush=True)
        env = self.env(d)
        init = [*self.cc, "init", "--kdf-memory", "8MiB", "--kdf-iterations", "1"]
        run_step(init, env, d / "logs" / "init", cwd=d)
        agent = start_agent(d, a.seed + index)
        try:
            self._drive(run, agent)
        finally:
            run.stopped = stop_agent(agent)
            print(f"  agent: {run.stopped}", flush=True)
        run.workspace = tree_stats(agent.root)
        run.agent_state = tree_stats(agent.root, skip="attachments")
        self._check(run, agent)
        return run

    def _workspace(self, run: SizeRun, agent: Agent) -> tuple[LiveDb | None, Transcripts | None]:
        """Fill the agent root with the case's bulk, live database and transcripts."""
        a, case = self.args, run.case
        assert case is not None
        bench = agent.root / "workspace" / "attachments" / "bench"
        t0 = time.perf_counter()
        if case.sparse:
            make_sparse_bulk(
                agent.root / "workspace" / "attachments", case.bytes, case.files, a.seed
            )
        else:
            make_bulk(agent.root, case.bytes, case.files, a.seed)
        run.bulk_s = run.setup_s["bulk"] = time.perf_counter() - t0
        db = transcripts = None
        if case.db_bytes:
            t0 = time.perf_counter()
            db = LiveDb(bench / "live.sqlite", case.db_bytes)
            run.setup_s["db"] = time.perf_counter() - t0
        if case.transcript_bytes:
            t0 = time.perf_counter()
            transcripts = Transcripts(bench / "transcripts", case.transcript_bytes)
            run.setup_s["transcripts"] = time.perf_counter() - t0
        print(
            f"  workspace: {human(case.bytes)} in {case.files:,} files"
            f"{' (sparse)' if case.sparse else ''}, db {human(case.db_bytes)}, transcripts "
            f"{human(case.transcript_bytes)}; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in run.setup_s.items()),
            flush=True,
        )
        return db, transcripts

    def _change(
        self, root: Path, rng: random.Random, db: LiveDb | None, transcripts: Transcripts | None
    ) -> int:
        """The change between two rounds: bulk churn, one database row, transcript tails."""
        changed = churn(root, self.args.change, rng)
        if db is not None:
            changed += db.change(rng)
        if transcripts is not None:
            changed += transcripts.append()
        return changed

    def _drive(self, run: SizeRun, agent: Agent) -> None:
        db, transcripts = self._workspace(run, agent)
        try:
            self._rounds(run, agent, db, transcripts)
        finally:
            if db is not None:
                db.close()

    def _rounds(
        self, run: SizeRun, agent: Agent, db: LiveDb | None, transcripts: Transcripts | None
    ) -> None:
        a = self.args

        s0, t0 = agent.seq(), time.monotonic()
        time.sleep(a.idle_seconds)
        run.throughput["idle"] = (agent.seq() - s0) / (time.monotonic() - t0)

        try:
            run.warmup = self.hot_backup(run, agent, "warmup")
            w = run.warmup
            print(
                f"  warm-up (full): pause {_f(w['pause_ms'], '.1f')} ms, prepare copied "
                f"{human(w['prepare'].get('bytes_copied'))} in "
                f"{_f(w['steps_ms'].get('prepare'), '.0f')} ms, in-pause copied "
                f"{human(w['stage'].get('bytes_copied'))}, store "
                f"{_f(w['steps_ms'].get('store'), '.0f')} ms",
                flush=True,
            )
        except ToolError as e:
            run.hot_failed.append(f"warm-up: {str(e).splitlines()[0]}")
            print(f"  !! warm-up backup failed: {e}", flush=True)

        rng = random.Random(f"{a.seed}-{run.size}-hot")
        s0, t0 = agent.seq(), time.monotonic()
        for i in range(1, a.backups + 1):
            changed = self._change(agent.root, rng, db, transcripts)
            run.load.append(os.getloadavg()[0])
            if a.sync:
                os.sync()  # outside the timing: no writeback left over from the last round
            try:
                rec = self.hot_backup(run, agent, f"hot-{i:03d}")
            except ToolError as e:
                msg = str(e).splitlines()
                why = next((ln for ln in reversed(msg) if ln.strip()), msg[0])
                run.hot_failed.append(f"backup {i}: {msg[0]} … {why}")
                print(f"  !! backup {i} failed: {msg[0]}\n     {why}", flush=True)
                continue
            rec["churn_bytes"] = changed
            if rec["consistency"] != "quiesced" or rec["pause_ms"] is None:
                run.hot_failed.append(
                    f"backup {i}: consistency {rec['consistency']!r}, pause {rec['pause_ms']}"
                )
            else:
                run.hot.append(rec)
            st, stage, how = rec["steps_ms"], rec["stage"], rec["strategy"]
            print(
                f"  hot {i:3d} [{rec['capture']}, horizon {rec['horizon_mode']}]: "
                f"pause {_f(rec['pause_ms'], '7.1f')} ms "
                f"(flush {st.get('flush', 0):.1f}, horizon {st.get('horizon', 0):.1f}, "
                f"capture {st.get('capture', 0):.1f}; quiesce {st.get('quiesce', 0):.1f}) "
                f"share {_f(cleancut_share(rec), '.1f')} ms, "
                f"{how.get('scan')} scan of {how.get('directories_visited')} dirs, "
                f"pinned {how.get('databases_pinned')}, tails {how.get('tails')}, "
                f"scanned {stage.get('files_scanned')} copied {stage.get('files_copied')} "
                f"files {human(stage.get('bytes_copied'))}; prepare "
                f"{human(rec['prepare'].get('bytes_copied'))}; store {st.get('store', 0):.0f} ms",
                flush=True,
            )
        run.throughput["hot"] = (agent.seq() - s0) / (time.monotonic() - t0)

        rng = random.Random(f"{a.seed}-{run.size}-baseline")
        copies = run.dir / "baseline"
        copies.mkdir()
        s0, t0 = agent.seq(), time.monotonic()
        pgid = agent.proc.pid
        for i in range(1, run.baseline_rounds + 1):
            dst = copies / "copy"
            shutil.rmtree(dst, ignore_errors=True)  # outside the timing
            self._change(agent.root, rng, db, transcripts)
            run.load.append(os.getloadavg()[0])
            if a.sync:
                os.sync()  # outside the timing: the previous copy's writeback is not counted
            started = time.perf_counter()
            os.killpg(pgid, signal.SIGSTOP)
            try:
                res = subprocess.run(
                    ["cp", "-a", str(agent.root), str(dst)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                )
            finally:
                os.killpg(pgid, signal.SIGCONT)
                ms = (time.perf_counter() - started) * 1000
            if res.returncode != 0:
                run.baseline_failed.append(
                    f"round {i}: cp exit {res.returncode}: {res.stderr.strip()[:200]}"
                )
                print(f"  !! baseline {i} failed: {res.stderr.strip()[:200]}", flush=True)
                continue
            run.baseline_ms.append(ms)
            print(f"  baseline {i:3d}: stop-copy-start {ms:9.1f} ms", flush=True)
        run.throughput["baseline"] = (agent.seq() - s0) / (time.monotonic() - t0)
        if (copies / "copy").exists():
            run.baseline_bytes = tree_stats(copies / "copy")[2]
        shutil.rmtree(copies, ignore_errors=True)

    def _check(self, run: SizeRun, agent: Agent) -> None:
        """Restore the last hot snapshot and hold it to the simulated agent's invariants."""
        last = run.hot[-1] if run.hot else run.warmup
        if not last or not last.get("snapshot_id"):
            run.check = "not run: no hot snapshot"
            return
        target = run.dir / "restored"
        try:
            run_step(
                [*self.cc, "restore", str(last["snapshot_id"]), "--target", str(target),
                 "--quiet", "--json"],
                self.env(run.dir), run.dir / "logs" / "restore", cwd=run.dir,
            )  # fmt: skip
            root = find_restored_root(target, agent.root)
            found = check_workspace(
                root, agent.oracle, inflight_ok=set(last["inflight"]), quiesced=True
            )
        except ToolError as e:
            run.check = f"restore failed: {str(e).splitlines()[0]}"
        else:
            run.check = (
                f"consistent ({last['label']})"
                if not found
                else f"{len(found)} violations ({last['label']}), e.g. {found[:3]}"
            )
        print(f"  check of the last hot snapshot: {run.check}", flush=True)
        shutil.rmtree(target, ignore_errors=True)


# --------------------------------------------------------------------------- report


def col(recs: list[dict[str, Any]], get: Any) -> list[float]:
    out = []
    for r in recs:
        with contextlib.suppress(KeyError, TypeError):
            v = get(r)
            if v is not None:
                out.append(float(v))
    return out


def cleancut_share(rec: dict[str, Any]) -> float:
    """The pause minus the time spent waiting for the agent (AGENT_STEPS)."""
    steps = rec["steps_ms"]
    return float(rec["pause_ms"]) - sum(float(steps.get(n) or 0.0) for n in AGENT_STEPS)


def summarize(run: SizeRun) -> dict[str, Any]:
    hot = run.hot
    pause = col(hot, lambda r: r["pause_ms"])
    stall = col(hot, lambda r: r["pause_ms"] + r["steps_ms"]["quiesce"])
    share = col(hot, cleancut_share)
    s: dict[str, Any] = {
        "pause": pause,
        "p50": pct(pause, 50),
        "p99": pct(pause, 99),
        "max": max(pause, default=None),
        "mean": statistics.fmean(pause) if pause else None,
        "stall_p99": pct(stall, 99),
        "share": share,
        "share_p50": pct(share, 50),
        "share_p99": pct(share, 99),
        "tracked": sum(1 for r in hot if r.get("strategy", {}).get("scan") == "tracked"),
        "pinned": sum(r.get("strategy", {}).get("databases_pinned", 0) for r in hot),
        "in_pause_db": sum(r.get("strategy", {}).get("databases_copied_in_pause", 0) for r in hot),
        "tails": sum(r.get("strategy", {}).get("tails", 0) for r in hot),
        "dirs_p50": pct(col(hot, lambda r: r["strategy"]["directories_visited"]), 50),
        "after_resume_p50": pct(col(hot, lambda r: r["strategy"]["after_resume_s"] * 1000), 50),
        "strategies": sorted({str(r.get("capture")) for r in hot}),
        "base_p50": pct(run.baseline_ms, 50),
        "base_p99": pct(run.baseline_ms, 99),
        "base_max": max(run.baseline_ms, default=None),
    }
    for name in (
        "hello",
        "quiesce",
        *IN_PAUSE_STEPS,
        "resume",
        "prepare",
        "stage",
        "verify_staged",
        "store",
        "verify",
    ):
        s[f"step_{name}"] = pct(col(hot, lambda r, n=name: r["steps_ms"][n]), 50)
    s["capture_max"] = max(col(hot, lambda r: r["steps_ms"]["capture"]), default=None)
    for name in ("snapshot", "lease_check", "capture"):  # the parts of cleancut's share
        s[f"{name}_p99"] = pct(col(hot, lambda r, n=name: r["steps_ms"][n]), 99)
    s["step_snapshot"] = pct(col(hot, lambda r: r["steps_ms"]["snapshot"]), 50)
    s["step_lease_check"] = pct(col(hot, lambda r: r["steps_ms"]["lease_check"]), 50)
    for key in ("files_scanned", "files_copied", "bytes_copied", "sqlite_copied"):
        s[f"stage_{key}"] = pct(col(hot, lambda r, k=key: r["stage"][k]), 50)
    s["stage_bytes_max"] = max(col(hot, lambda r: r["stage"]["bytes_copied"]), default=None)
    s["prepare_bytes"] = pct(col(hot, lambda r: r["prepare"]["bytes_copied"]), 50)
    s["wall_s"] = pct(col(hot, lambda r: r["wall_s"]), 50)
    s["rss"] = max(col(hot, lambda r: r["peak_rss"]), default=None)
    s["ratio"] = s["base_p50"] / s["p50"] if s["p50"] and s["base_p50"] else None
    return s


def tables(runs: list[SizeRun], args: argparse.Namespace) -> str:
    sums = {r.label: summarize(r) for r in runs}
    n = args.backups
    hot_rows, step_rows, base_rows, out_rows, agent_rows, share_rows = [], [], [], [], [], []
    for r in runs:
        s = sums[r.label]
        w = r.warmup or {}
        hot_rows.append([
            r.label, f"{r.workspace[0]:,} / {r.workspace[1]:,} / {human(r.workspace[2])}",
            f"{len(r.hot)}/{n}" + (f" ({len(r.hot_failed)} failed)" if r.hot_failed else ""),
            _f(s["p50"], ".1f"), _f(s["p99"], ".1f"), _f(s["max"], ".1f"), _f(s["mean"], ".1f"),
            _f(s["stall_p99"], ".1f"), _f(s["share_p50"], ".1f"), _f(s["share_p99"], ".1f"),
            _f(w.get("pause_ms"), ".1f")
            + f" ({human((w.get('stage') or {}).get('bytes_copied'))} in pause)",
            "n/a" if s["p99"] is None else ("met" if s["p99"] <= TARGET_P99_MS else "NOT met"),
        ])  # fmt: skip
        step_rows.append([
            r.label, _f(s["step_quiesce"], ".1f"), _f(s["step_flush"], ".1f"),
            _f(s["step_horizon"], ".1f"), _f(s["step_capture"], ".1f"),
            _f(s["capture_max"], ".1f"), _f(s["stage_files_scanned"], ",.0f"),
            _f(s["stage_files_copied"], ",.0f"), human(s["stage_bytes_copied"]),
            human(s["stage_bytes_max"]), _f(s["stage_sqlite_copied"], ".0f"),
            f"{s['tracked']}/{len(r.hot)}", _f(s["dirs_p50"], ",.0f"),
            f"{s['pinned']} / {s['in_pause_db']}", str(s["tails"]),
            _f(s["after_resume_p50"], ".1f"),
        ])  # fmt: skip
        base_rows.append([
            r.label, f"{len(r.baseline_ms)}/{r.baseline_rounds}"
            + (f" ({len(r.baseline_failed)} failed)" if r.baseline_failed else ""),
            human(r.baseline_bytes), _f(s["base_p50"], ",.0f"), _f(s["base_p99"], ",.0f"),
            _f(s["base_max"], ",.0f"), _f(s["p50"], ".1f"),
            _f(s["ratio"], ",.0f") + ("x" if s["ratio"] else ""),
        ])  # fmt: skip
        out_rows.append([
            r.label, _f(s["step_prepare"], ",.0f"), human(s["prepare_bytes"]),
            _f(s["step_stage"], ",.0f"), _f(s["step_verify_staged"], ".1f"),
            _f(s["step_store"], ",.0f"), _f(s["step_verify"], ",.0f"), _f(s["wall_s"], ".2f"),
            _f(s["rss"] / MIB if s["rss"] else None, ".0f"),
            _f(w.get("steps_ms", {}).get("prepare"), ",.0f"),
            _f(w.get("steps_ms", {}).get("store"), ",.0f"),
        ])  # fmt: skip
        share_rows.append([
            r.label, ", ".join(s["strategies"]), _f(s["p50"], ".1f"), _f(s["p99"], ".1f"),
            _f(s["step_flush"], ".1f"), _f(s["step_horizon"], ".1f"),
            _f(s["share_p50"], ".1f"), _f(s["share_p99"], ".1f"),
            f"{_f(s['step_capture'], '.1f')} / {_f(s['capture_p99'], '.1f')}",
            f"{_f(s['step_snapshot'], '.1f')} / {_f(s['snapshot_p99'], '.1f')}",
            f"{_f(s['step_lease_check'], '.1f')} / {_f(s['lease_check_p99'], '.1f')}",
        ])  # fmt: skip
        tp = r.throughput
        agent_rows.append([
            r.label, _f(tp.get("idle"), ",.0f"), _f(tp.get("hot"), ",.0f"),
            _f(tp.get("baseline"), ",.0f"),
            f"{_f(pct(r.load, 50), '.1f')} / {_f(max(r.load, default=None), '.1f')}",
            f"{r.agent_state[0]:,} / {human(r.agent_state[2])}", r.stopped, r.check,
        ])  # fmt: skip
    parts = [
        "Hot backup pause (ms; pause = quiesce acknowledged .. resume, as `pause_ms`; "
        "cleancut's share = the pause minus the agent's flush and the horizon, i.e. minus "
        "waiting for the agent to be idle and for in-flight actions to settle). "
        "The workspace column is the agent root at the end of the run: the bulk plus what "
        "`churn` appended or added plus the agent's own state, which grows as it runs:",
        "",
        md_table(
            [
                "size",
                "workspace files / dirs / bytes",
                "backups ok",
                "pause p50",
                "p99",
                "max",
                "mean",
                "quiesce+pause p99",
                "cleancut share p50",
                "share p99",
                "warm-up (full) pause (copied in pause)",
                "p99 <= 250 ms",
            ],
            hot_rows,
        ),
        "",
        "cleancut's share of the pause (ms): the pause minus the agent's own steps in it "
        "(flush; horizon, the wait for its actions to settle), by capture strategy:",
        "",
        md_table(
            [
                "size",
                "strategy",
                "pause p50",
                "pause p99",
                "flush p50",
                "horizon p50",
                "cleancut's share p50",
                "cleancut's share p99",
                "capture p50 / p99",
                "snapshot ioctl p50 / p99",
                "lease check p50 / p99 (its answer comes after resume when pipelined)",
            ],
            share_rows,
        ),
        "",
        "Inside the pause, p50 of each step (ms) and what the in-pause capture did (p50; "
        "quiesce comes before the pause: new turns are held while the current one ends):",
        "",
        md_table(
            [
                "size",
                "quiesce",
                "flush",
                "horizon",
                "capture",
                "capture max",
                "files scanned",
                "files copied",
                "bytes copied",
                "bytes copied max",
                "sqlite copied",
                "tracked scans",
                "dirs visited",
                "dbs pinned / copied in pause (sum)",
                "tails (sum)",
                "after resume ms",
            ],
            step_rows,
        ),
        "",
        "Naive baseline, stop-copy-start (ms; SIGSTOP of the agent's process group, "
        "`cp -a` of the whole agent root into a fresh directory, SIGCONT):",
        "",
        md_table(
            [
                "size",
                "rounds ok",
                "bytes copied",
                "p50",
                "p99",
                "max",
                "hot p50",
                "baseline p50 / hot p50",
            ],
            base_rows,
        ),
        "",
        "Outside the pause (agent running), p50 over the measured backups (ms):",
        "",
        md_table(
            [
                "size",
                "prepare",
                "prepare copied",
                "stage (from a snapshot, after resume)",
                "verify_staged",
                "store",
                "verify",
                "whole command s",
                "peak RSS MiB",
                "warm-up prepare",
                "warm-up store",
            ],
            out_rows,
        ),
        "",
        "Agent: writes/s (oracle records) idle before the first backup, during the hot "
        "rounds and during the baseline rounds; its own files and bytes at the end "
        "(outside attachments); its stop line; the invariant check of the last hot "
        "snapshot, restored. Load avg: the 1-minute load average before each round; the "
        "benchmark itself (agent + cleancut) accounts for about 2 of it, more means other "
        "work shared the 2 cores:",
        "",
        md_table(
            [
                "size",
                "idle w/s",
                "hot w/s",
                "baseline w/s",
                "load avg p50 / max",
                "agent files / bytes",
                "stop line",
                "restored last snapshot",
            ],
            agent_rows,
        ),
    ]
    return "\n".join(parts)


def verdict(runs: list[SizeRun]) -> list[str]:
    sums = [(r, summarize(r)) for r in runs if r.hot]
    lines = []
    if not sums:
        return ["- no hot backup succeeded: targets not evaluated"]
    missed = [f"{r.label} ({s['p99']:.1f} ms)" for r, s in sums if s["p99"] > TARGET_P99_MS]
    lines.append(
        f"- target pause p99 <= {TARGET_P99_MS:.0f} ms at every size: "
        + ("**met**" if not missed else f"**NOT met** at {', '.join(missed)}")
        + f" (p99 of {len(sums[0][1]['pause'])} samples, nearest rank: essentially the max)"
    )
    if len(sums) >= 2:
        (r0, s0), (r1, s1) = sums[0], sums[-1]
        allowed = max(s0["p50"] * GROWTH_FACTOR, s0["p50"] + GROWTH_SLACK_MS)
        grew = s1["p50"] > allowed
        xs = [r.size / GIB for r, _ in sums]
        ys = [s["p50"] for _, s in sums]
        slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else 0.0
        lines.append(
            f"- target no growth with workspace size ({r0.label} -> {r1.label}, same 10 MiB "
            f"change): p50 {s0['p50']:.1f} -> {s1['p50']:.1f} ms, p99 {s0['p99']:.1f} -> "
            f"{s1['p99']:.1f} ms; fitted p50 slope {slope:+.1f} ms/GiB; "
            + ("**NOT met**" if grew else "**met**")
            + f" (criterion: largest-size p50 <= max({GROWTH_FACTOR}x, +{GROWTH_SLACK_MS:.0f}"
            " ms) of the smallest-size p50)"
        )
    shares = ", ".join(
        f"{r.label} p50 {_f(s['share_p50'], '.1f')} / p99 {_f(s['share_p99'], '.1f')} ms"
        for r, s in sums
    )
    worst = max((s["share_p99"] for _, s in sums if s["share_p99"] is not None), default=None)
    lines.append(
        f"- cleancut's share of the pause: {shares}; issue 13's ext4 target p99 <= "
        f"{TARGET_SHARE_P99_MS:.0f} ms at 10,000 files: "
        + ("n/a" if worst is None else "**met**" if worst <= TARGET_SHARE_P99_MS else "**NOT met**")
    )
    failed = sum(len(r.hot_failed) for r in runs)
    lines.append(
        f"- hot backups that failed or were not `quiesced`: {failed}"
        + "".join(f"\n  - {r.label}: {m}" for r in runs for m in r.hot_failed)
    )
    bfailed = sum(len(r.baseline_failed) for r in runs)
    if bfailed:
        lines.append(f"- baseline rounds that failed: {bfailed}")
    return lines


# Issue 13's targets for cleancut's share of the pause, p99.
TARGET_SHARE_BTRFS_MS = 20.0  # on btrfs, at every case
GROWTH_BOUND = 2.0  # largest case / smallest case, along each axis


def matrix_table(runs: list[SizeRun]) -> str:
    rows = []
    for r in runs:
        c, s = r.case, summarize(r)
        if c is None:
            continue
        rows.append([
            c.fs, c.name, f"{c.files:,}", human(c.bytes), human(c.db_bytes),
            human(c.transcript_bytes), f"{len(r.hot)}/{r.hot and len(r.hot) + len(r.hot_failed)}",
            _f(s["p50"], ".1f"), _f(s["p99"], ".1f"), _f(s["share_p50"], ".1f"),
            _f(s["share_p99"], ".1f"), _f(s["base_p50"], ",.0f"), _f(s["base_p99"], ",.0f"),
            f"{_f(pct(r.load, 50), '.1f')} / {_f(max(r.load, default=None), '.1f')}",
            ", ".join(s["strategies"]), r.check if not r.error else "FAILED: " + r.error[:80],
        ])  # fmt: skip
    return "\n".join([
        "The matrix (ms): whole pause and cleancut's share of it (the pause minus the "
        "agent's flush and horizon), p50 / p99 of the measured backups; the stop-copy-start "
        "baseline; the 1-minute load average before each round (p50 / max):",
        "",
        md_table(
            ["fs", "case", "files", "bulk bytes", "live db", "transcripts", "backups ok",
             "pause p50", "pause p99", "share p50", "share p99", "baseline p50",
             "baseline p99", "load p50 / max", "capture", "restored last snapshot"],
            rows,
        ),
    ])  # fmt: skip


def matrix_verdict(runs: list[SizeRun]) -> list[str]:
    lines = []
    by_fs: dict[str, dict[str, tuple[SizeRun, dict[str, Any]]]] = {}
    for r in runs:
        if r.case is not None and r.hot:
            by_fs.setdefault(r.case.fs, {})[r.case.name] = (r, summarize(r))
    for fs, cases in by_fs.items():
        base = cases.get("base")
        for axis in ("files", "bytes", "db", "transcripts"):
            cells = sorted(
                (v for v in cases.values() if v[0].case and v[0].case.axis == axis),
                key=lambda v: v[0].case.value() if v[0].case else 0,
            )
            if base is None or not cells:
                lines.append(f"- {fs}, {axis} axis: not evaluated (base or axis cases missing)")
                continue
            (top, st), sb = cells[-1], base[1]
            ratio = st["share_p99"] / sb["share_p99"] if sb["share_p99"] else None
            ratio50 = st["share_p50"] / sb["share_p50"] if sb["share_p50"] else None
            lines.append(
                f"- {fs}, {axis} axis (base -> {top.case.name if top.case else '?'}): "
                f"cleancut's share p99 {sb['share_p99']:.1f} -> {st['share_p99']:.1f} ms "
                f"({_f(ratio, '.2f')}x; p50 {sb['share_p50']:.1f} -> {st['share_p50']:.1f} ms, "
                f"{_f(ratio50, '.2f')}x): bound <= {GROWTH_BOUND:.0f}x on p99 "
                + ("**met**" if ratio is not None and ratio <= GROWTH_BOUND else "**NOT met**")
            )
        if fs == "btrfs":
            over = [
                f"{n} ({s['share_p99']:.1f} ms)"
                for n, (_, s) in cases.items()
                if s["share_p99"] > TARGET_SHARE_BTRFS_MS
            ]
            lines.append(
                f"- btrfs, cleancut's share p99 <= {TARGET_SHARE_BTRFS_MS:.0f} ms at every case: "
                + ("**met**" if not over else f"**NOT met** at {', '.join(over)}")
            )
        else:
            ten = cases.get("files-10k")
            lines.append(
                f"- {fs}, cleancut's share p99 <= {TARGET_SHARE_P99_MS:.0f} ms at 10,000 files: "
                + (
                    "not run"
                    if ten is None
                    else f"{ten[1]['share_p99']:.1f} ms, "
                    + ("**met**" if ten[1]["share_p99"] <= TARGET_SHARE_P99_MS else "**NOT met**")
                )
            )
    failed = sum(len(r.hot_failed) for r in runs)
    lines.append(
        f"- hot backups that failed or were not `quiesced`: {failed}"
        + "".join(f"\n  - {r.label}: {m}" for r in runs for m in r.hot_failed)
    )
    return lines


def report(args: argparse.Namespace, runs: list[SizeRun], work: Path) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    files_note = (
        "the matrix's cases (benchmarks/pause_cases.py): sparse bulk files (a 64-byte "
        "header, then a hole), 16 per directory; a live WAL SQLite database kept open by the "
        "benchmark (1 MiB row rewritten per round) and 4 JSONL transcripts (64 KiB appended "
        "to each per round), all under workspace/attachments/bench"
        if args.matrix
        else f"file count grows with size (--scale-files: {args.files:,} per GiB)"
        if args.scale_files
        else f"{args.files:,} bulk files at every size (only the bytes grow)"
    )
    images = sorted({f for f in args.fs_list if f != "native"})
    cp_version = quick(["cp", "--version"]).splitlines()[0]
    lines = [
        f"## Pause benchmark — {now}",
        "",
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"- machine: {', '.join(machine_info())}; work dir {work} on {fs_type(work)}"
        + (
            f"; each case on its own loop-mounted {'/'.join(images)} image made by the "
            "benchmark (sparse file, mkfs, mount -o loop; on btrfs the agent root is a "
            "subvolume; staging, repository and baseline copies on it), unmounted after it"
            if images
            else ""
        ),
        f"- workload: simulated agent running flat out (no turn pause); bulk attachments: "
        f"{files_note}; {human(args.change)} changed by `churn` before each backup and each "
        "baseline round"
        + (", plus the database row and the transcript tails" if args.matrix else ""),
        f"- hot: 1 warm-up (first, full) backup, then {args.backups} measured "
        f"`cleancut backup ROOT --agent unix:SOCK --staging DIR {' '.join(HOT_ARGS)} --json`, "
        "staging on the same filesystem; page cache warm (not dropped); "
        + (
            "sync(2) before each round (hot and baseline), outside the timing"
            if args.sync
            else "no sync between rounds"
        ),
        f"- baseline: SIGSTOP of the agent's process group, `cp -a` ({cp_version}) of the "
        "whole agent root into a fresh directory, SIGCONT; the previous copy is deleted "
        "before the round, outside the timing",
        "- percentiles: nearest rank (value at rank ceil(q/100 n)); with 30 samples p99 is "
        "the largest sample, so p99 and max coincide",
        "",
        *([matrix_table(runs), ""] if args.matrix else []),
        tables(runs, args),
        "",
        "Targets (issue): pause p99 <= 250 ms; no growth of the pause with workspace size "
        "when the change stays the same.",
        "",
        *(matrix_verdict(runs) if args.matrix else verdict(runs)),
    ]
    for r in runs:
        if r.error:
            lines.append(f"- **{r.label} FAILED**: {r.error.splitlines()[0]}")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256M,1G,4G", help="bulk sizes (default 256M,1G,4G)")
    ap.add_argument("--files", type=int, default=10_000, help="bulk files (default 10,000)")
    ap.add_argument(
        "--scale-files",
        action="store_true",
        help="grow the file count with the size: --files per GiB",
    )
    ap.add_argument("--change", default="10M", help="bytes churned before each round")
    ap.add_argument("--backups", type=int, default=30, help="measured hot backups per size")
    ap.add_argument(
        "--baseline-rounds",
        default="30",
        help="stop-copy-start rounds: one number, or one per size (e.g. 30,30,10)",
    )
    ap.add_argument(
        "--idle-seconds",
        type=float,
        default=5.0,
        help="measure the agent's write rate this long before the first backup",
    )
    ap.add_argument(
        "--fs",
        default="native",
        help="comma list of native (the work dir's own filesystem), ext4, btrfs (a "
        "loop-mounted image per case, made and unmounted by the benchmark; for btrfs the "
        "agent root is a subvolume; root, e2fsprogs and btrfs-progs needed)",
    )
    ap.add_argument(
        "--matrix",
        action="store_true",
        help="issue 13's matrix instead of --sizes: one axis at a time from a base case "
        "(1k files, 256 MiB sparse bulk, 10 MB live WAL database, 1 MiB transcripts): "
        "files 10k/100k, bytes 1G/4G, database 2 GB, transcripts 100 MiB; per --fs",
    )
    ap.add_argument(
        "--cases",
        help=f"with --matrix, only these cases (comma list of {', '.join(case_names())})",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "pause")
    ap.add_argument("--results", type=Path, help="markdown file to append a section to")
    ap.add_argument("--cleancut", help="command to run cleancut (default: .venv/bin/cleancut)")
    ap.add_argument("--keep", action="store_true", help="keep each size's work directory")
    ap.add_argument(
        "--no-sync",
        dest="sync",
        action="store_false",
        help="do not sync(2) before each round (outside the timing)",
    )
    args = ap.parse_args(argv)
    try:
        args.size_list = [corpus.parse_size(s) for s in args.sizes.split(",") if s.strip()]
        args.change = corpus.parse_size(args.change)
        rounds = [int(x) for x in args.baseline_rounds.split(",")]
    except ValueError as e:
        ap.error(str(e))
    args.fs_list = [f.strip() for f in args.fs.split(",") if f.strip()]
    if not args.fs_list or set(args.fs_list) - {"native", "ext4", "btrfs"}:
        ap.error("--fs: a comma list of native, ext4, btrfs")
    if args.matrix:
        names = args.cases.split(",") if args.cases else None
        if names and set(names) - set(case_names()):
            ap.error(f"--cases: choose from {', '.join(case_names())}")
        args.case_list = matrix(args.fs_list, names)
    else:
        args.case_list = [
            Case(f"size-{size_label(n)}", "bytes", args.files if not args.scale_files
                 else max(100, round(args.files * n / GIB)), n, 0, 0, fs, sparse=False)
            for fs in args.fs_list for n in args.size_list
        ]  # fmt: skip
    if len(rounds) == 1:
        rounds *= len(args.case_list)
    if len(rounds) != len(args.case_list):
        ap.error("--baseline-rounds: give one number or one per case")
    args.baseline_rounds = rounds
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    runs: list[SizeRun] = []
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)  # so every image is unmounted on the way out
    partial = work / "pause-report-partial.md"
    for i, case in enumerate(args.case_list):
        t0 = time.monotonic()
        try:
            run = bench.run_case(case, i)
        except (ToolError, OSError, sqlite3.Error) as e:
            run = SizeRun(case.bytes, case.files, work / case.name, case=case, error=str(e))
            print(f"!! {case.label} FAILED:\n{e}", flush=True)
        runs.append(run)
        print(f"  {run.label} took {time.monotonic() - t0:.0f} s", flush=True)
        if not args.keep:
            shutil.rmtree(run.dir, ignore_errors=True)
        partial.write_text(report(args, runs, work))  # what is done so far, if cut short
    print(f"all sizes took {time.monotonic() - started:.0f} s")

    raw = work / f"pause-raw-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    raw.write_text(json.dumps(
        [{"case": r.label, "size": r.size, "files": r.files, "warmup": r.warmup, "hot": r.hot,
          "hot_failed": r.hot_failed, "baseline_ms": r.baseline_ms,
          "baseline_failed": r.baseline_failed, "throughput": r.throughput,
          "stopped": r.stopped, "check": r.check, "error": r.error, "load": r.load}
         for r in runs],
        indent=1,
    ))  # fmt: skip
    text = report(args, runs, work)
    print("\n" + text)
    print(f"raw samples: {raw}")
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(f"appended to {args.results}")
    bad = [
        r
        for r in runs
        if r.error or r.hot_failed or r.baseline_failed or not r.check.startswith("consistent")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
