"""A tree nested deeper than Python's recursion limit backs up, checks, restores and is
tested like any other: every command walks with an explicit stack, through descriptors.

Before, a 1,500-level source backed up (exit 0) and then `check` and `restore` ended in a
RecursionError traceback: a snapshot that could be made but not restored.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI

from cleancut.fsio.treewalk import remove_tree, walk

DEPTH = 1_500  # Python's default recursion limit is 1,000


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest's own clean-up of old temporary directories recurses (shutil.rmtree) and
    would fail the whole run on these trees: remove them here, with the loop."""
    yield
    for child in list(tmp_path.iterdir()):
        remove_tree(child)


def _deep(top: Path, depth: int = DEPTH) -> list[str]:
    """`top`/d/d/.../d (depth levels) with a file at the bottom; made through descriptors,
    so no path is ever spelled out. Returns the names, top to bottom."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"the deepest file\n")
        os.close(out)
    finally:
        os.close(fd)
    return ["d"] * depth


def test_a_tree_deeper_than_the_recursion_limit_goes_through_every_command(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    _deep(src)
    (src / "top.txt").write_text("top\n")
    first = repo_cli.ok("backup", str(src), "--json").json()
    assert first["dirs"] == DEPTH + 1 and first["files"] == 2
    (src / "top.txt").write_text("top, changed\n")
    second = repo_cli.ok("backup", str(src), "--json").json()

    for args in (("check", "--read-data"), ("ls", "latest"), ("stats",),
                 ("diff", first["snapshot_id"], second["snapshot_id"]), ("restore-test",)):
        res = repo_cli.run(*args)
        assert res.code == 0, (args, res.err[-500:])
        assert "Traceback" not in res.err and "RecursionError" not in res.err

    target = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(target))
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        got = os.open("bottom", os.O_RDONLY, dir_fd=fd)
        assert os.read(got, 100) == b"the deepest file\n"
        os.close(got)
    finally:
        os.close(fd)
    assert (target / "top.txt").read_text() == "top, changed\n"


def test_walk_visits_every_level_of_a_deep_tree_and_never_follows_a_symlink(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    src = tmp_path / "src"
    _deep(src, 1_200)
    (src / "link").symlink_to(outside)
    seen = list(walk(src))
    assert len(seen) == 1_201
    assert seen[0].rel == "" and "link" in seen[0].files and seen[0].dirs == ["d"]
    assert seen[-1].files == ["bottom"] and seen[-1].rel.count("/") == 1_199
    assert all("secret" not in level.files for level in seen)


def test_remove_tree_removes_a_deep_read_only_tree_and_only_it(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    src = tmp_path / "src"
    _deep(src, 1_200)
    (src / "d" / "link").symlink_to(outside)
    os.mkfifo(src / "d" / "fifo")
    os.chmod(src / "d", stat.S_IRUSR | stat.S_IXUSR)  # a restored 0500 directory
    remove_tree(src)
    assert not src.exists()
    assert (outside / "keep").read_text() == "k"
    remove_tree(src)  # missing is fine
