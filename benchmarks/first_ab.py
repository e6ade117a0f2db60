#!/usr/bin/env python3
"""First backups of one tree by several cleancut builds and restic, alternated in one run.

Why: on a shared machine two runs minutes apart differ by more than the change under
test, so a change to the first backup is measured against the build before it and
against restic back to back, with the page cache dropped before each backup and a
fresh repository each time. Peak RSS is the summed RSS of the process tree (workers
included), sampled as `run.py` does; CPU is the tree's user + system time.

    .venv/bin/python benchmarks/first_ab.py TREE --variant new=".venv/bin/cleancut" \
        --variant base="env PYTHONPATH=/tmp/base/src .venv/bin/python -m cleancut.cli.main" \
        [--rounds 2] [--no-restic]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import Cleancut, Restic, Tool, drop_caches, run_step  # noqa: E402


def repo_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def one(tool: Tool, label: str, tree: Path) -> str:
    tool.reset()
    tool.init()
    drop_caches()
    step = run_step(tool.backup_cmd(tree, "first"), tool.env(), tool.logs / "first", cwd=tool.dir)
    stored = repo_bytes(tool.repo)
    shutil.rmtree(tool.dir, ignore_errors=True)  # one repository on the disk at a time
    return (
        f"| {label} | {step.seconds:.2f} | {step.cpu_seconds:.2f} "
        f"| {step.peak_rss / 2**20:.0f} | {stored:,} | {os.getloadavg()[0]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--variant", action="append", default=[], help="NAME=COMMAND")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/first-ab"))
    parser.add_argument("--no-restic", action="store_true")
    args = parser.parse_args()
    tools: list[tuple[str, Tool]] = []
    for spec in args.variant:
        name, _, command = spec.partition("=")
        tools.append((name, Cleancut(args.work / name, shlex.split(command))))
    if not args.no_restic:
        tools.append(("restic", Restic(args.work / "restic")))
    print(f"load average before: {os.getloadavg()[0]:.2f}\n")
    print("| build | wall s | CPU s | peak RSS MiB | repo bytes | load after |")
    print("|---|---|---|---|---|---|")
    for _ in range(args.rounds):
        for label, tool in tools:
            print(one(tool, label, args.tree), flush=True)


if __name__ == "__main__":
    main()
