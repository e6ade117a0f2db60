"""A cache on a full filesystem: cleancut works without it, says so, and loses nothing."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, tree_state


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(mnt: Path) -> None:
    """Write until the filesystem refuses another byte (unbuffered: no late ENOSPC)."""
    fd = os.open(mnt / f"filler{len(list(mnt.glob('filler*')))}", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_cache_on_a_full_filesystem(cli: CLI, small_fs: Path, tmp_path: Path):
    cli.cache = small_fs / "cache"
    cli.env["CLEANCUT_CACHE_DIR"] = str(cli.cache)
    cli.init()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(random.Random(1).randbytes(300_000))
    cli.ok("backup", str(src))

    # The cache exists, then its filesystem fills: the next backup must still commit.
    _fill(small_fs)
    (src / "b.bin").write_bytes(random.Random(2).randbytes(300_000))
    res = cli.run("backup", str(src), "--json")
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    cli.ok("restore", "latest", "--target", str(tmp_path / "one"))
    assert tree_state(tmp_path / "one") == tree_state(src)

    # No cache at all, and no room to create one: a warning line naming the way out.
    shutil.rmtree(cli.cache)
    _fill(small_fs)
    res = cli.run("snapshots", "--json")
    assert res.code == 0, res.err
    assert len(res.json()) == 2
    assert "CLEANCUT_CACHE_DIR" in res.err and str(cli.cache) in res.err
    assert "Traceback" not in res.err
    cli.ok("restore", "latest", "--target", str(tmp_path / "two"))
    assert tree_state(tmp_path / "two") == tree_state(src)
    cli.ok("check", "--read-data")
