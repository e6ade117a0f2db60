#!/usr/bin/env python3
"""Benchmark cleancut against restic and borg on one generated agent-workspace corpus.

Why one script and one run: numbers from different days, corpora or cache states are not
comparable, so every tool sees the same bytes, phase by phase, with the page cache dropped
before each timed step where the kernel allows it.

Phases (each tool in turn within a phase, so all tools back up the identical tree):
  1. first backup of the fresh corpus
  2. backup with nothing changed
  3. `corpus.mutate` (~1 % changed), then a backup of the changed tree
  4. full restore of the latest snapshot, verified against the corpus

Usage:
    python benchmarks/run.py [--size 1G] [--work benchmarks/work] [--tools cleancut,restic,borg]
                             [--results benchmarks/RESULTS.md]
Stdlib only, so it runs on a bare Python 3.11.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402  (sibling module; benchmarks/ is not a package)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PASSWORD = "bench-password-not-secret"
MB = 1_000_000
SAMPLE_FILES = 64

# (metric key, description, comparison, threshold). Targets are defined against restic; the
# borg column applies the same thresholds for information.
TARGETS = (  # issue 14
    ("first_tput", "first-backup throughput", ">=", 2.0),
    ("unchanged_s", "unchanged-backup time", "<=", 0.5),
    ("restore_tput", "restore throughput", ">=", 1.5),
    ("peak_rss", "peak RSS (backup and restore)", "<=", 1.5),
    ("repo_bytes", "repository size", "<=", 1.0),
)


class ToolError(RuntimeError):
    """A tool command failed or restored wrong data; carries what a human needs to rerun it."""


@dataclass
class Step:
    """Measurements of one child process run."""

    seconds: float
    cpu_seconds: float
    peak_rss: int  # bytes
    stdout: str


@dataclass
class ToolRun:
    """Everything measured for one tool across the phases."""

    tool: Tool
    steps: dict[str, Step] = field(default_factory=dict)
    repo_after: dict[str, int] = field(default_factory=dict)  # repo bytes after each backup
    repo_bytes: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- process control


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache so reads hit the disk; False if not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, rss bytes) for every process we can see."""
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            rss_pages = int(Path(entry.path, "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, rss_pages * page)
    return table


def tree_rss(root_pid: int) -> int:
    """Summed RSS of a process and all its descendants right now.

    Why: wait4's ru_maxrss is the peak of the single largest process; a tool with worker
    processes holds the sum of them at once, which only sampling can see."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _rss) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += table.get(pid, (0, 0))[1]
        stack.extend(children.get(pid, ()))
    return total


class _Sampler(threading.Thread):
    """Samples the child's tree RSS and enforces the step timeout."""

    def __init__(self, pid: int, timeout: float):
        super().__init__(daemon=True)
        self.pid, self.deadline = pid, time.monotonic() + timeout
        self.peak, self.timed_out = 0, False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, tree_rss(self.pid))
            if time.monotonic() > self.deadline:
                self.timed_out = True
                os.killpg(self.pid, signal.SIGKILL)
                return


def run_step(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None, timeout: float = 7200.0
) -> Step:
    """Run one command, timing it and taking its peak RSS (max of wait4 and sampling)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        sampler = _Sampler(proc.pid, timeout)
        sampler.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # The child has its own session, so Ctrl-C does not reach it: end it ourselves.
            os.killpg(proc.pid, signal.SIGKILL)
            os.waitpid(proc.pid, 0)
            raise
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    if proc.returncode != 0 or sampler.timed_out:
        why = "timed out" if sampler.timed_out else f"exit code {proc.returncode}"
        tail = err_path.read_text(errors="replace")[-3000:] or stdout[-3000:]
        raise ToolError(
            f"command failed ({why}): {shlex.join(cmd)}\n"
            f"cwd: {cwd or os.getcwd()}\nlogs: {out_path} {err_path}\n"
            f"--- stderr tail ---\n{tail.rstrip()}"
        )
    return Step(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss=max(usage.ru_maxrss * 1024, sampler.peak),
        stdout=stdout,
    )


def parse_json(text: str) -> object | None:
    """The whole output as JSON (pretty-printed or not), else its last line, else None."""
    for candidate in (text, (text.strip().splitlines() or [""])[-1]):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def quick(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """Untimed helper command (versions, init); output or a short error marker."""
    try:
        res = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    return (
        (res.stdout or res.stderr).strip()
        if res.returncode == 0
        else f"unavailable (exit {res.returncode}: {(res.stderr or res.stdout).strip()[:200]})"
    )


# --------------------------------------------------------------------------- tools


class Tool:
    """One backup program: how to init, back up, restore, and where its repository lives."""

    name = "tool"

    def __init__(self, work: Path):
        self.dir = work / self.name
        self.repo = self.dir / "repo"
        self.cache = self.dir / "cache"
        self.restore_dir = self.dir / "restore"
        self.logs = self.dir / "logs"

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def version(self) -> str:
        raise NotImplementedError

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, source: Path, label: str) -> list[str]:
        raise NotImplementedError

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        raise NotImplementedError

    def reset(self) -> None:
        """Start from an empty repository and cache so earlier runs cannot help."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.cache.mkdir(parents=True)
        self.logs.mkdir(parents=True)

    def init(self) -> None:
        run_step(self.init_cmd(), self.env(), self.logs / "init", cwd=self.dir)

    def after_backup(self, run: ToolRun, label: str, step: Step) -> None:
        """Hook to inspect a backup's output."""


class Cleancut(Tool):
    name = "cleancut"

    def __init__(self, work: Path, command: list[str]):
        super().__init__(work)
        self.command = command

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CLEANCUT_REPO": str(self.repo),
            "CLEANCUT_PASSWORD": PASSWORD,
            "CLEANCUT_CACHE_DIR": str(self.cache),
        }

    def version(self) -> str:
        out = quick([*self.command, "--version"], self.env())
        if not out.startswith("unavailable"):
            return out.splitlines()[0]
        py = Path(self.command[0]).with_name("python")
        py_cmd = str(py) if py.exists() else sys.executable
        meta = quick([py_cmd, "-c", "import importlib.metadata as m; print(m.version('cleancut'))"])
        return f"cleancut {meta}"

    def init_cmd(self) -> list[str]:
        return [*self.command, "init"]

    def backup_cmd(self, source: Path, label: str) -> list[str]:
        return [*self.command, "backup", str(source), "--json", "--quiet"]

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        return [
            *self.command,
            "restore",
            "latest",
            "--target",
            str(target),
            "--quiet",
            "--json",
        ], None

    def after_backup(self, run: ToolRun, label: str, step: Step) -> None:
        """Check the documented JSON summary; a missing or odd one is noted, not fatal."""
        summary = parse_json(step.stdout)
        if not isinstance(summary, dict):
            run.notes.append(
                f"{label} backup: stdout is not one JSON object: {step.stdout.strip()[:200]!r}"
            )
            return
        missing = {
            "snapshot_id",
            "files",
            "dirs",
            "bytes_read",
            "bytes_added",
            "duration_s",
            "warnings",
        } - set(summary)
        if missing:
            run.notes.append(f"{label} backup JSON lacks {sorted(missing)}")
        if summary.get("warnings"):
            run.notes.append(f"{label} backup warnings: {str(summary['warnings'])[:300]}")
        run.notes.append(
            f"{label} backup JSON: files={summary.get('files')} "
            f"bytes_read={summary.get('bytes_read')} "
            f"bytes_added={summary.get('bytes_added')}"
        )

    def stats(self) -> str:
        out = quick([*self.command, "stats", "--json"], self.env())
        obj = parse_json(out)
        return out if obj is None else json.dumps(obj, separators=(",", ":"))


class Restic(Tool):
    name = "restic"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RESTIC_REPOSITORY": str(self.repo),
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(self.cache),
        }

    def version(self) -> str:
        return quick(["restic", "version"]).splitlines()[0]

    def init_cmd(self) -> list[str]:
        return ["restic", "init", "--repository-version", "2"]

    def backup_cmd(self, source: Path, label: str) -> list[str]:
        return ["restic", "backup", "--quiet", "--tag", label, str(source)]

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        return ["restic", "restore", "latest", "--quiet", "--target", str(target)], None


class Borg(Tool):
    name = "borg"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BORG_REPO": str(self.repo),
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_BASE_DIR": str(self.cache),
            "BORG_DISPLAY_PASSPHRASE": "no",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def version(self) -> str:
        return quick(["borg", "--version"])

    def init_cmd(self) -> list[str]:
        return ["borg", "init", "-e", "repokey-blake2"]

    def backup_cmd(self, source: Path, label: str) -> list[str]:
        return ["borg", "create", "--compression", "zstd,3", f"::{label}", str(source)]

    def restore_cmd(self, target: Path) -> tuple[list[str], Path | None]:
        return ["borg", "extract", "::mutated"], target


def cleancut_command(override: str | None) -> list[str]:
    """The lead's install path first; else the module from this interpreter's environment."""
    if override:
        return shlex.split(override)
    binary = REPO_ROOT / ".venv" / "bin" / "cleancut"
    if binary.exists():
        return [str(binary)]
    return [sys.executable, "-m", "cleancut.cli.main"]


def ensure_installed(names: list[str]) -> None:
    """restic and borg come from Debian; install them once if missing."""
    missing = [n for n in names if n in ("restic", "borg") and not shutil.which(n)]
    if not missing:
        return
    print(f"installing {missing} with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "restic", "borgbackup"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


# --------------------------------------------------------------------------- corpus + verify


def prepare_corpus(work: Path, size: int, seed: int) -> tuple[Path, str]:
    """Generate the corpus, or reuse an untouched one of the same size and seed."""
    root, meta_path = work / "corpus", work / "corpus.meta.json"
    want = {
        "size": size,
        "seed": seed,
        "state": "pristine",
        "generator": hashlib.sha256(Path(corpus.__file__).read_bytes()).hexdigest(),
    }
    if root.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and list(corpus.tree_size(root)) == meta.get(
            "tree"
        ):
            return root, "reused"
    shutil.rmtree(root, ignore_errors=True)
    meta_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    corpus.generate(root, size, seed)
    took = time.perf_counter() - t0
    meta_path.write_text(json.dumps({**want, "tree": list(corpus.tree_size(root))}))
    return root, f"{took:.1f} s"


def mark_mutated(work: Path) -> None:
    """Record before mutating, so an interrupted run never reuses a half-changed corpus."""
    meta_path = work / "corpus.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["state"] = "mutated"
    meta_path.write_text(json.dumps(meta))


def manifest(root: Path) -> dict[str, int]:
    """relative path -> size for every regular file (symlinks and specials would be errors)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.lstat(p).st_size
    return out


def sha256_file(path: Path) -> str:
    """Streamed, so large vector files do not have to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sample_paths(ref: dict[str, int]) -> list[str]:
    """A fixed random sample plus the largest files, where partial restores would show."""
    names = sorted(ref)
    rng = random.Random(7)
    picked = set(rng.sample(names, min(SAMPLE_FILES, len(names))))
    picked |= set(sorted(names, key=lambda n: ref[n])[-8:])
    return sorted(picked)


def find_restored_root(target: Path, source: Path) -> Path:
    """Tools place the tree differently (full absolute path, basename or directly): take the
    candidate sharing most top-level names with the source; extras and gaps are reported by
    the manifest comparison afterwards."""
    want = {e.name for e in source.iterdir()}
    best, best_overlap = None, 0
    for cand in (target / source.relative_to(source.anchor), target / source.name, target):
        overlap = len(want & {e.name for e in cand.iterdir()}) if cand.is_dir() else 0
        if overlap > best_overlap:
            best, best_overlap = cand, overlap
    if best is not None:
        return best
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_dir())[:10]
    raise ToolError(f"restored tree not found under {target}; top dirs: {found}")


def verify_restore(
    target: Path, source: Path, ref: dict[str, int], ref_hashes: dict[str, str]
) -> str:
    """Compare file list, sizes and sample hashes; raise loudly on any difference."""
    root = find_restored_root(target, source)
    got = manifest(root)
    problems = []
    if set(got) != set(ref):
        missing, extra = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
        problems.append(
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} unexpected (e.g. {extra[:3]})"
        )
    wrong_size = [p for p in ref if p in got and got[p] != ref[p]]
    if wrong_size:
        problems.append(f"{len(wrong_size)} files differ in size (e.g. {wrong_size[:3]})")
    wrong_hash = [p for p, h in ref_hashes.items() if p in got and sha256_file(root / p) != h]
    if wrong_hash:
        problems.append(
            f"{len(wrong_hash)} sampled files differ in content (e.g. {wrong_hash[:3]})"
        )
    if problems:
        raise ToolError(f"RESTORE VERIFICATION FAILED in {root}: " + "; ".join(problems))
    return (
        f"restore verified: {len(got):,} files, {sum(got.values()):,} bytes, "
        f"{len(ref_hashes)} sampled sha256 equal"
    )


def dir_bytes(path: Path) -> int:
    """Apparent bytes, not blocks: comparable across filesystems and tools' pack sizes."""
    return corpus.tree_size(path)[1] if path.exists() else 0


# --------------------------------------------------------------------------- phases


def timed(run: ToolRun, label: str, cmd: list[str], cwd: Path | None, drop: bool) -> Step:
    """One measured step; caches are dropped first so no tool profits from the previous one."""
    if drop:
        drop_caches()
    step = run_step(cmd, run.tool.env(), run.tool.logs / label, cwd=cwd)
    run.steps[label] = step
    print(
        f"  {run.tool.name:9} {label:10} {step.seconds:8.2f} s  "
        f"peak RSS {step.peak_rss / 2**20:7.1f} MiB",
        flush=True,
    )
    return step


def phase(runs: list[ToolRun], title: str, action: Callable[[ToolRun], None]) -> None:
    """Run `action` for each tool still healthy; a failure disables that tool only."""
    print(f"== {title}", flush=True)
    for run in runs:
        if not run.ok:
            continue
        try:
            action(run)
        except (ToolError, OSError) as e:
            run.error = f"{title}: {e}"
            print(f"!! {run.tool.name} FAILED during {title}:\n{e}", flush=True)


def backup_phase(runs: list[ToolRun], label: str, source: Path, drop: bool) -> None:
    def act(run: ToolRun) -> None:
        step = timed(run, label, run.tool.backup_cmd(source, label), run.tool.dir, drop)
        run.repo_after[label] = dir_bytes(run.tool.repo)
        run.tool.after_backup(run, label, step)

    phase(runs, f"backup: {label}", act)


def restore_phase(runs: list[ToolRun], source: Path, drop: bool) -> None:
    ref = manifest(source)
    ref_hashes = {p: sha256_file(source / p) for p in sample_paths(ref)}

    def act(run: ToolRun) -> None:
        target = run.tool.restore_dir
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        cmd, cwd = run.tool.restore_cmd(target)
        timed(run, "restore", cmd, cwd or run.tool.dir, drop)
        run.notes.append(verify_restore(target, source, ref, ref_hashes))
        shutil.rmtree(target)

    phase(runs, "restore latest", act)


# --------------------------------------------------------------------------- report


def machine_info() -> list[str]:
    """What a reader needs to judge the numbers: cores, memory, CPU model, kernel."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return [
        f"nproc {os.cpu_count()}",
        f"memory {mem_kib / 2**20:.1f} GiB",
        f"CPU {cpu}",
        f"kernel {platform.release()}",
        f"Python {platform.python_version()}",
    ]


def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table padded to line up, so the same text reads well in a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [fmt_row(header, widths), "| " + " | ".join("-" * w for w in widths) + " |"]
    return "\n".join([*lines, *(fmt_row(r, widths) for r in rows)])


def metrics(run: ToolRun, src_bytes: int, restored_bytes: int) -> dict[str, float | None]:
    """The headline numbers of one tool; None where a step did not run (tool failed)."""
    s = run.steps

    def secs(k: str) -> float | None:
        return s[k].seconds if k in s else None

    return {
        "first_s": secs("first"),
        "unchanged_s": secs("unchanged"),
        "mutated_s": secs("mutated"),
        "restore_s": secs("restore"),
        "first_tput": src_bytes / MB / s["first"].seconds if "first" in s else None,
        "restore_tput": restored_bytes / MB / s["restore"].seconds if "restore" in s else None,
        "repo_bytes": run.repo_bytes,
        "mutate_growth": (
            run.repo_after["mutated"] - run.repo_after["unchanged"]
            if {"mutated", "unchanged"} <= set(run.repo_after)
            else None
        ),
        "peak_rss": max((x.peak_rss for x in s.values()), default=None),
    }


def _f(v: float | None, spec: str) -> str:
    """Format a number, or 'n/a' for a missing one, so failed tools still get a table row."""
    return "n/a" if v is None else format(v, spec)


def results_table(runs: list[ToolRun], src_bytes: int, restored_bytes: int) -> str:
    """The headline table: one row per tool, failed tools included and marked."""
    header = [
        "tool",
        "first backup s",
        "first MB/s",
        "unchanged s",
        "after mutate s",
        "restore s",
        "restore MB/s",
        "repo bytes",
        "repo/corpus",
        "repo growth by mutate",
        "peak RSS MiB",
    ]
    rows = []
    for run in runs:
        m = metrics(run, src_bytes, restored_bytes)
        repo = m["repo_bytes"]
        rows.append(
            [
                run.tool.name + ("" if run.ok else " (FAILED)"),
                _f(m["first_s"], ".2f"),
                _f(m["first_tput"], ".1f"),
                _f(m["unchanged_s"], ".2f"),
                _f(m["mutated_s"], ".2f"),
                _f(m["restore_s"], ".2f"),
                _f(m["restore_tput"], ".1f"),
                _f(repo, ",d"),
                _f(repo / src_bytes if repo else None, ".3f"),
                _f(m["mutate_growth"], ",d"),
                _f(m["peak_rss"] / 2**20 if m["peak_rss"] else None, ".0f"),
            ]
        )
    return md_table(header, rows)


def steps_table(runs: list[ToolRun]) -> str:
    """Per-step wall vs CPU time: on 2 cores this shows how much parallelism each tool uses."""
    rows = [
        [
            run.tool.name,
            label,
            f"{st.seconds:.2f}",
            f"{st.cpu_seconds:.2f}",
            f"{st.peak_rss / 2**20:.0f}",
            _f(run.repo_after.get(label), ",d"),
        ]
        for run in runs
        for label, st in run.steps.items()
    ]
    header = ["tool", "step", "wall s", "cpu s (user+sys)", "peak RSS MiB", "repo bytes after"]
    return md_table(header, rows)


def ratio_table(runs: list[ToolRun], src_bytes: int, restored_bytes: int) -> str:
    """cleancut over restic (the targets) and over borg, each with a plain met / not met."""
    by_name = {r.tool.name: metrics(r, src_bytes, restored_bytes) for r in runs}
    cc = by_name.get("cleancut")
    header = [
        "metric",
        "target",
        "cleancut/restic",
        "met (vs restic)",
        "cleancut/borg",
        "met (same threshold vs borg)",
    ]
    rows = []
    for key, desc, op, thr in TARGETS:
        row = [desc, f"{op} {thr:g}x"]
        for other in ("restic", "borg"):
            ratio = None
            om = by_name.get(other)
            if cc and om and cc[key] is not None and om[key]:
                ratio = cc[key] / om[key]
            met = (
                "n/a"
                if ratio is None
                else ("met" if (ratio >= thr if op == ">=" else ratio <= thr) else "not met")
            )
            row += [_f(ratio, ".3f"), met]
        rows.append(row)
    return md_table(header, rows)


def report(args: argparse.Namespace, runs: list[ToolRun], info: dict[str, str]) -> str:
    """The dated markdown section: enough context (command, machine, versions) to rerun it."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    src, restored = int(info["src_bytes"]), int(info["restored_bytes"])
    lines = [
        f"## {now}: corpus {args.size}",
        "",
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"- machine: {', '.join(machine_info())}",
        f"- tools: {'; '.join(f'{r.tool.version()}' for r in runs)}",
        f"- corpus: {info['corpus']}",
        f"- mutate: {info['mutate']}",
        f"- page cache dropped before each timed step: {info['dropped']}",
        "- MB = 10^6 bytes; throughput = corpus bytes / wall seconds; repo bytes = "
        "apparent size of all repository files after the three backups; repo growth by "
        "mutate = repo bytes after the post-mutate backup minus before it",
        "",
        results_table(runs, src, restored),
        "",
        "Ratios (targets are defined against restic):",
        "",
        ratio_table(runs, src, restored),
        "",
        "<details><summary>per-step wall/CPU time</summary>",
        "",
        steps_table(runs),
        "",
        "</details>",
        "",
    ]
    for run in runs:
        for note in run.notes:
            lines.append(f"- {run.tool.name}: {note}")
        if run.error:
            lines.append(f"- **{run.tool.name} FAILED**: {run.error.splitlines()[0]}")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="corpus size, e.g. 200M, 1G (default 1G)")
    ap.add_argument(
        "--work",
        type=Path,
        default=HERE / "work",
        help="scratch dir for corpus, repositories, caches, restores",
    )
    ap.add_argument("--tools", default="cleancut,restic,borg")
    ap.add_argument(
        "--results",
        type=Path,
        default=HERE / "RESULTS.md",
        help="markdown file to append a dated section to ('-' for none)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fraction", type=float, default=0.01, help="share changed by mutate")
    ap.add_argument("--cleancut", help="command to run cleancut (default: .venv/bin/cleancut)")
    ap.add_argument("--no-drop-caches", action="store_true")
    args = ap.parse_args(argv)
    args.tool_names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tool_names) - {"cleancut", "restic", "borg"}
    if unknown:
        ap.error(f"unknown tools {sorted(unknown)}")
    return args


def make_tools(args: argparse.Namespace, work: Path) -> list[Tool]:
    """Tools in the order given on the command line, which is the order within each phase."""
    made: dict[str, Tool] = {"restic": Restic(work), "borg": Borg(work)}
    if "cleancut" in args.tool_names:
        made["cleancut"] = Cleancut(work, cleancut_command(args.cleancut))
    return [made[n] for n in args.tool_names]


def main(argv: list[str] | None = None) -> int:
    """Run all phases; exit 1 if any tool failed, so scripts and CI notice."""
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ensure_installed(args.tool_names)
    drop = not args.no_drop_caches and drop_caches()
    print(f"page cache dropping: {'yes' if drop else 'no (not permitted or disabled)'}")

    source, gen = prepare_corpus(work, corpus.parse_size(args.size), args.seed)
    count, src_bytes = corpus.tree_size(source)
    print(f"corpus {source}: {count:,} files, {src_bytes:,} bytes (generation: {gen})")
    runs = [ToolRun(t) for t in make_tools(args, work)]

    def init(run: ToolRun) -> None:
        run.tool.reset()
        run.tool.init()

    phase(runs, "init", init)
    backup_phase(runs, "first", source, drop)
    backup_phase(runs, "unchanged", source, drop)
    mark_mutated(work)
    t0 = time.perf_counter()
    changed = corpus.mutate(source, args.fraction)
    mutate_info = (
        f"{changed:,} bytes changed/added ({100 * changed / src_bytes:.2f} %) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    print(f"mutate: {mutate_info}")
    backup_phase(runs, "mutated", source, drop)
    for run in runs:
        run.repo_bytes = dir_bytes(run.tool.repo) if run.ok else None
        if run.ok and isinstance(run.tool, Cleancut):
            run.notes.append(f"stats --json: {run.tool.stats()[:500]}")
    restore_phase(runs, source, drop)

    info = {
        "src_bytes": str(src_bytes),
        "restored_bytes": str(corpus.tree_size(source)[1]),
        "corpus": f"{count:,} files, {src_bytes:,} bytes, seed {args.seed}, generation {gen}",
        "mutate": mutate_info,
        "dropped": "yes" if drop else "no",
    }
    text = report(args, runs, info)
    print("\n" + text)
    if str(args.results) != "-":
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
        print(f"appended to {args.results}")
    failed = [r for r in runs if not r.ok]
    for r in failed:
        print(f"\n!!!!! {r.tool.name} FAILED !!!!!\n{r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
