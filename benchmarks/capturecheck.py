"""What the capture check (validation/capture.py) costs after resume, by workspace size.

For each size, a workspace of FILES files (a fifth of them JSON of about 2 KiB, a
twentieth JSONL logs of about 200 KiB, the rest plain text) is backed up once with its
capture check (everything checked), then 10 files are changed and it is checked
again: only the changed files are read, the others inherit the parent's verdicts.
The cold check (no parent to inherit from) is timed beside it on the same tree.

    .venv/bin/python benchmarks/capturecheck.py [--files 1000,10000]

Figures are seconds of this process's CPU time (wall clock beside it): on a shared
machine the CPU time is the steadier of the two. Compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cleancut.archiver.backup import BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.ops.runner import run_backup
from cleancut.repository.keys import KdfParams
from cleancut.repository.repository import Repository, init_repository
from cleancut.validation.capture import CaptureCheck, check_capture
from cleancut.validation.rules import DEFAULT_RULES

PASSPHRASE = "benchmark"
OLD = 1_600_000_000  # unchanged files' mtime: outside the racy window


def make_workspace(root: Path, files: int, rng: random.Random) -> list[Path]:
    paths = []
    for i in range(files):
        directory = root / f"d{i // 100:04}"
        directory.mkdir(parents=True, exist_ok=True)
        if i % 5 == 0:
            path = directory / f"m{i}.json"
            path.write_text(json.dumps({"i": i, "text": "x" * rng.randrange(1500, 2500)}))
        elif i % 20 == 1:
            path = directory / f"log{i}.jsonl"
            path.write_text("".join(json.dumps({"turn": t, "t": "y" * 180}) + "\n"
                                    for t in range(1000)))
        else:
            path = directory / f"note{i}.md"
            path.write_text("z" * rng.randrange(200, 2000))
        os.utime(path, (OLD, OLD))
        paths.append(path)
    return paths


def measure(files: int, work: Path) -> dict[str, str | int]:
    rng = random.Random(files)
    root, repo_dir, cache = work / "tree", work / "repo", work / "cache"
    paths = make_workspace(root, files, rng)
    init_repository(LocalBackend(repo_dir), PASSPHRASE, kdf=KdfParams(8 * 1024, 1, 1))
    repo = Repository.open(LocalBackend(repo_dir), PASSPHRASE, cache)
    try:
        time.sleep(0.1)  # past the racy window of the files just written
        cold_cpu, cold, first = _timed(lambda: check_capture(
            repo, "agent", root, DEFAULT_RULES, [], "quiesced"))
        options = BackupOptions(name="agent", consistency="quiesced",
                                validation=first.verdicts.to_json())
        run_backup(repo, root, options)
        checkable = [p for p in paths if p.suffix in (".json", ".jsonl")]
        for path in rng.sample(checkable, 10):
            path.write_text(path.read_text()[:-1] + " ")
        warm_cpu, warm, second = _timed(lambda: check_capture(
            repo, "agent", root, DEFAULT_RULES, [], "quiesced"))
    finally:
        repo.close()
    return {
        "files": files,
        "checkable": first.verdicts.checked,
        "cold": f"{cold_cpu:.3f} ({cold:.3f})",
        "changed_checked": second.verdicts.checked,
        "inherited": second.verdicts.inherited,
        "after_change": f"{warm_cpu:.3f} ({warm:.3f})",
    }


def _timed(run: Callable[[], CaptureCheck]) -> tuple[float, float, CaptureCheck]:
    cpu, wall = time.process_time(), time.monotonic()
    result = run()
    return time.process_time() - cpu, time.monotonic() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", default="1000,10000")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    print(f"{'files':>8} {'checkable':>9} {'cold: cpu (wall) s':>20} {'checked':>8} "
          f"{'inherited':>9} {'after change: cpu (wall) s':>28}")
    for files in (int(n) for n in args.files.split(",")):
        work = Path(tempfile.mkdtemp(prefix="cleancut-capturecheck-"))
        try:
            r = measure(files, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"{r['files']:>8} {r['checkable']:>9} {r['cold']:>20} "
              f"{r['changed_checked']:>8} {r['inherited']:>9} {r['after_change']:>28}")


if __name__ == "__main__":
    main()
