"""Two backups writing into one repository at the same time."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

from conftest import CLI, tree_state

from cleancut.testing.sample import make_workspace


def test_two_concurrent_backups_both_succeed_and_restore(repo_cli: CLI, tmp_path: Path):
    sources = []
    for i in range(2):
        src = make_workspace(tmp_path / f"agent{i}", seed=i)
        # Shared content, so both processes race to store the same blobs.
        (src / "shared.bin").write_bytes(random.Random(99).randbytes(3 << 20))
        (src / "own.bin").write_bytes(random.Random(i).randbytes(2 << 20))
        sources.append(src)
    procs = [
        subprocess.Popen(
            repo_cli.command("backup", str(src), "--json"),
            env=repo_cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src in sources
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    ids = [json.loads(out)["snapshot_id"] for out, _ in results]
    repo_cli.ok("check", "--read-data")
    for i, (sid, src) in enumerate(zip(ids, sources, strict=True)):
        target = tmp_path / f"restored{i}"
        repo_cli.ok("restore", sid, "--target", str(target))
        assert tree_state(target) == tree_state(src)
