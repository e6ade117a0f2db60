"""Progress goes to a terminal's stderr only: never into pipes, JSON or --quiet runs."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from conftest import CLI


def _stderr_on_a_terminal(cli: CLI, *args: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cli.command(*args),
        env=cli.env | {"COLUMNS": "200"},
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_not_elsewhere(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}.bin").write_bytes(os.urandom(1 << 20))
    code, err = _stderr_on_a_terminal(repo_cli, "backup", str(src))
    assert code == 0
    assert "files" in err and "/s" in err

    code, err = _stderr_on_a_terminal(repo_cli, "backup", str(src), "--quiet")
    assert code == 0 and err.strip() == ""

    piped = repo_cli.ok("backup", str(src))
    assert piped.err == ""
