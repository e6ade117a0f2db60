"""The metadata warmer (fsio/warm.py): it stays inside the tree, never blocks on a
special file, skips excluded directories, stops on a warm cache, and its child
process is always reaped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cleancut.fsio.warm import WARM_SAMPLE, Warmer


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "fifo").mkdir()
    os.mkfifo(outside / "fifo" / "pipe")
    for rel in ("a/b/c", "a/d", "skipme/inner", "e"):
        (src / rel).mkdir(parents=True)
    (src / "a" / "b" / "file").write_text("x")
    (src / "link-out").symlink_to(outside)  # a symlink to a directory: never entered
    (src / "a" / "link-dir").symlink_to(outside / "deep")
    os.mkfifo(src / "e" / "pipe")  # lstat only: never opened, never blocks
    return src, outside


def _scanned(src: Path, skip: set[str]) -> Warmer:
    warmer = Warmer([("", src)], lambda rel: rel in skip)
    warmer.warm_dir_ns = 0  # never judge the cache warm: scan everything
    warmer.scan()
    return warmer


def test_the_scan_lists_every_directory_of_the_tree_and_nothing_outside(tmp_path: Path):
    src, _ = _tree(tmp_path)
    warmer = _scanned(src, set())
    # src, a, a/b, a/b/c, a/d, skipme, skipme/inner, e: the symlinks are not entered.
    assert warmer.dirs == 8


def test_an_excluded_directory_is_not_entered(tmp_path: Path):
    src, _ = _tree(tmp_path)
    assert _scanned(src, {"skipme"}).dirs == 6


def test_a_named_directory_is_scanned_under_its_prefix(tmp_path: Path):
    src, outside = _tree(tmp_path)
    skipped: list[str] = []

    def skip(rel: str) -> bool:
        skipped.append(rel)
        return False

    warmer = Warmer([("state", src / "a"), ("other", outside)], skip)
    warmer.warm_dir_ns = 0
    warmer.scan()
    assert warmer.dirs == 4 + 3  # a, a/b, a/b/c, a/d; outside, deep, fifo
    assert sorted(skipped) == ["other/deep", "other/fifo", "state/b", "state/b/c", "state/d"]


def test_a_warm_cache_stops_the_scan_after_its_sample(tmp_path: Path):
    for i in range(WARM_SAMPLE * 2):
        (tmp_path / "src" / f"d{i:03}").mkdir(parents=True)
    warmer = Warmer([("", tmp_path / "src")], lambda rel: False)
    warmer.warm_dir_ns = 10**12  # every listing counts as warm
    warmer.scan()
    assert warmer.dirs == WARM_SAMPLE


def test_a_source_that_is_missing_is_skipped_quietly(tmp_path: Path):
    warmer = _scanned(tmp_path / "absent", set())
    assert warmer.dirs == 0


def test_the_child_is_reaped_by_stop(tmp_path: Path):
    src, _ = _tree(tmp_path)
    warmer = Warmer([("", src)], lambda rel: False).start()
    pid = warmer.pid
    assert pid is not None
    warmer.stop()
    assert warmer.pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already: no zombie is left
    warmer.stop()  # twice is harmless
