"""Restore-only A/B: restic and one or more cleancut builds restoring the same snapshot,
alternated round by round, the page cache dropped before each step.

Reuses a finished `benchmarks/run.py --work DIR` directory (corpus, cleancut and restic
repositories, their caches) without modifying it: the repositories and caches are
copied once into a scratch directory, restores go there too. Each restore is checked
against the corpus (file count, sizes, a sampled sha256), as run.py does.

    python benchmarks/restore_ab.py --from /tmp/final-bench --scratch /tmp/restore-ab \\
        --cleancut new=.venv/bin/cleancut \\
        --cleancut "base=env PYTHONPATH=/tmp/base/src .venv/bin/python -m cleancut.cli" \\
        --rounds 3

Prints each step (seconds, peak RSS of the process tree) and, per cleancut build, the
median throughput ratio against restic over the rounds, with the load average.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402  (a script beside run.py, sharing its process control)
    PASSWORD,
    drop_caches,
    find_restored_root,
    manifest,
    run_step,
    sample_paths,
    sha256_file,
)

MB = 1e6


def copy_once(src: Path, dst: Path) -> None:
    if not dst.exists():
        shutil.copytree(src, dst, symlinks=True)


def verify(target: Path, source: Path, ref: dict[str, int], hashes: dict[str, str]) -> int:
    root = find_restored_root(target, source)
    got = manifest(root)
    if got != ref:
        missing = sorted(set(ref) - set(got))[:5]
        raise SystemExit(f"restore into {target} differs from the corpus (e.g. {missing})")
    for rel, digest in hashes.items():
        if sha256_file(root / rel) != digest:
            raise SystemExit(f"restore into {target}: {rel} has other content")
    return sum(got.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, required=True)
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--cleancut", action="append", default=[], metavar="NAME=COMMAND")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-restic", action="store_true")
    args = ap.parse_args(argv)
    corpus = args.src / "corpus"
    args.scratch.mkdir(parents=True, exist_ok=True)
    for tool in ("cleancut", "restic"):
        copy_once(args.src / tool / "repo", args.scratch / tool / "repo")
        copy_once(args.src / tool / "cache", args.scratch / tool / "cache")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEANCUT_", "RESTIC_"))}
    tools: list[tuple[str, list[str], dict[str, str]]] = []
    for spec in args.cleancut:
        name, _, command = spec.partition("=")
        env = {
            **base_env,
            "CLEANCUT_REPO": str(args.scratch / "cleancut" / "repo"),
            "CLEANCUT_PASSWORD": PASSWORD,
            "CLEANCUT_CACHE_DIR": str(args.scratch / "cleancut" / "cache"),
        }
        tools.append(
            (
                name,
                [*shlex.split(command), "restore", "latest", "--quiet", "--json", "--target"],
                env,
            )
        )
    if not args.no_restic:
        env = {
            **base_env,
            "RESTIC_REPOSITORY": str(args.scratch / "restic" / "repo"),
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(args.scratch / "restic" / "cache"),
        }
        tools.append(("restic", ["restic", "restore", "latest", "--quiet", "--target"], env))
    ref = manifest(corpus)
    hashes = {p: sha256_file(corpus / p) for p in sample_paths(ref)}
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in tools}
    rss: dict[str, list[int]] = {name: [] for name, _, _ in tools}
    restored = 0
    for rnd in range(args.rounds):
        order = tools if rnd % 2 == 0 else list(reversed(tools))
        for name, cmd, env in order:
            # Each restore is removed once verified (1 GiB a step fills a shared disk
            # fast). ext4 skips inodes freed in the last 30 s when it allocates
            # (recently_deleted), so each step pays for its predecessor's removal: the
            # tools alternate, so both pay alike.
            target = args.scratch / "targets" / f"{name}-{rnd}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            drop_caches()
            load = os.getloadavg()[0]
            step = run_step([*cmd, str(target)], env, args.scratch / "logs" / f"{name}-{rnd}")
            restored = verify(target, corpus, ref, hashes)
            shutil.rmtree(target)
            seconds[name].append(step.seconds)
            rss[name].append(step.peak_rss)
            print(
                f"round {rnd} {name:10} {step.seconds:7.2f} s  cpu {step.cpu_seconds:6.2f} s  "
                f"peak RSS {step.peak_rss / 2**20:6.1f} MiB  load {load:.2f}",
                flush=True,
            )
    shutil.rmtree(args.scratch / "targets", ignore_errors=True)
    print(f"restored {restored / MB:.0f} MB per restore; load now {os.getloadavg()}")
    for name, _, _ in tools:
        med = statistics.median(seconds[name])
        line = f"{name:10} median {med:6.2f} s  {restored / MB / med:7.1f} MB/s  "
        line += f"peak RSS max {max(rss[name]) / 2**20:6.1f} MiB"
        if "restic" in seconds and name != "restic":
            ratios = [r / c for c, r in zip(seconds[name], seconds["restic"], strict=True)]
            line += f"  vs restic {statistics.median(ratios):.2f}x "
            line += "(" + ", ".join(f"{x:.2f}" for x in ratios) + ")"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
