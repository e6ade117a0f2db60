#!/usr/bin/env python3
"""First backup of one tree with and without worker processes, back to back (decision 0010).

Why: on a shared machine two runs minutes apart differ by more than the change under
test; alternating the two paths on the same tree, with the page cache dropped (or
warm) before each, gives comparable pairs. The archiver runs in this process with a
fresh repository each time (cheap key derivation); its `pool_threshold` chooses the
path (0: every file to the workers; huge: all in-process). CPU is this process's
(main) and its reaped children's (the workers).

    .venv/bin/python benchmarks/pool_ab.py TREE [--rounds 2] [--workers N] [--warm]
    .venv/bin/python benchmarks/pool_ab.py TREE --counts 1,2 [--work /dev/shm]

`--counts` alternates worker counts on the pool path instead (no in-process run);
`--work` puts the repositories elsewhere than the temporary directory (a tmpfs when
the disk is short of space: the source is still read from its disk).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.repository.keys import KdfParams
from cleancut.repository.repository import Repository, init_repository

IN_PROCESS = 1 << 62


def cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def one(tree: Path, threshold: int, workers: int | None, warm: bool, work: Path | None) -> str:
    root = Path(tempfile.mkdtemp(prefix="pool-ab-", dir=work))
    try:
        backend = LocalBackend(root / "repo")
        init_repository(backend, "pw", None, KdfParams(memory_kib=8 * 1024, iterations=1))
        repo = Repository.open(backend, "pw", root / "cache")
        if not warm:
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        c0, w0 = cpu(), time.perf_counter()
        archiver = Archiver(repo, tree, BackupOptions(name="ab"))
        archiver.pool_threshold = threshold
        archiver.pool_workers = workers
        result = archiver.run()
        wall, c1 = time.perf_counter() - w0, cpu()
        repo.close()
        pool = archiver.content.pool
        path = f"{len(pool.workers)} worker(s)" if pool is not None else "in-process"
        return (
            f"| {path} | {wall:.2f} | {c1[0] - c0[0]:.2f} | {c1[1] - c0[1]:.2f} "
            f"| {result.bytes_added:,} |"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--warm", action="store_true", help="keep the page cache")
    parser.add_argument("--counts", default="", help="worker counts to alternate, e.g. 1,2")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    cache = "warm" if args.warm else "dropped"
    print(f"load average before: {os.getloadavg()[0]:.2f}; page cache {cache}\n")
    print("| path | wall s | main CPU s | workers CPU s | bytes added |")
    print("|---|---|---|---|---|")
    runs = [(0, int(n)) for n in args.counts.split(",") if n]
    runs = runs or [(IN_PROCESS, args.workers), (0, args.workers)]
    for _ in range(args.rounds):
        for threshold, workers in runs:
            print(one(args.tree, threshold, workers, args.warm, args.work), flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
