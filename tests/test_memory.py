"""Backup streams: memory stays bounded whatever the file size."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import CLI


def test_5_gib_file_backs_up_in_well_under_1_gib_of_rss(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    big = src / "huge.img"
    with open(big, "wb") as f:
        # Sparse, with real data every 512 MiB so it is not one repeated chunk.
        for i in range(10):
            f.seek(i * (512 << 20))
            f.write(os.urandom(4 << 20))
        f.truncate(5 << 30)
    proc = subprocess.Popen(
        repo_cli.command("backup", str(src), "--json"),
        env=repo_cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    peak_mib = usage.ru_maxrss / 1024  # this process alone, in KiB on Linux
    print(f"peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 600, f"peak RSS {peak_mib:.0f} MiB"
    ls = repo_cli.ok("ls", "latest", "huge.img", "--json").json()
    assert ls[0]["size"] == 5 << 30
