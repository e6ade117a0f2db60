"""A repository directory with a FIFO, a device node or a symlink to one planted in it.

Reading an object must never block (a FIFO with no writer blocks a plain open
forever) nor read without end (/dev/zero): such an object is damaged data, one
line and exit 4, and the read-ahead of the cache passes it by.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI

# A hang guard, not a timing assertion: the old code blocked in open() forever.
GUARD_S = 120

PROBE = """
import sys
from cleancut.errors import CleancutError
from cleancut.backend.local import LocalBackend
backend = LocalBackend(sys.argv[1])
name = sys.argv[2]
backend.prefetch(name)
print("prefetch returned")
for call in (lambda: backend.get(name), lambda: backend.get_range(name, 0, 10)):
    try:
        call()
        print("read")
    except CleancutError as exc:
        print(type(exc).__name__, exc.exit_code, exc)
"""


def _plant(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    else:
        path.symlink_to("/dev/zero")


def _a_pack(cli: CLI, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(os.urandom(5000))
    cli.ok("backup", str(src), "--name", "s")
    packs = sorted(p for p in (cli.repo / "data").rglob("*") if p.is_file())
    assert packs
    return packs[0]


@pytest.mark.parametrize("kind", ["fifo", "zero", "symlink-to-zero"])
def test_an_object_that_is_not_a_regular_file_is_damage_not_a_hang(
    repo_cli: CLI, tmp_path: Path, kind: str
):
    pack = _a_pack(repo_cli, tmp_path)
    _plant(pack, kind)
    name = str(pack.relative_to(repo_cli.repo))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(repo_cli.repo), name],
        capture_output=True, text=True, timeout=GUARD_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "prefetch returned"
    assert len(lines) == 3
    for line in lines[1:]:
        assert line.startswith("IntegrityError 4 object "), line
        assert "not a regular file" in line


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_check_read_data_and_restore_report_a_planted_special_file(
    repo_cli: CLI, tmp_path: Path, kind: str
):
    pack = _a_pack(repo_cli, tmp_path)
    _plant(pack, kind)
    check = repo_cli.run("check", "--read-data", timeout=GUARD_S)
    assert check.code == 4, check.err
    assert "Traceback" not in check.err
    restore = repo_cli.run("restore", "latest", "--target", str(tmp_path / "r"), timeout=GUARD_S)
    assert restore.code == 4, restore.err
    assert "Traceback" not in restore.err
