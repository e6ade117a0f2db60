"""A source that fights back: FIFOs, device nodes, and entries swapped while the walk runs.

The walk must never block on a special file, never read a device, and never
leave the source through a symlink, whether the hostile entry is there from the
start or replaces a file or directory between the listing and the open. The
swaps happen at an exact point: the archiver's `before_open` seam runs just
before an entry is opened, after its directory was listed and the entry stat'ed.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import CLI, PASSWORD
from hostile import swapper

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.repository.repository import Repository
from cleancut.repository.walk import walk

SECRET = b"root-only secret from outside the source\n"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret.txt").chmod(0o600)
    return outside


def _snapshot_paths(cli: CLI, tree: str) -> dict[str, str]:
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        return {path: node.type for path, node in walk(repo, tree)}
    finally:
        repo.close()


def _backup(cli: CLI, src: Path, before_open: Callable[[str], None]) -> tuple[str, list[str]]:
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        archiver = Archiver(repo, src, BackupOptions(name="hostile"))
        archiver.before_open = before_open
        result = archiver.run()
        return result.snapshot.tree, result.warnings
    finally:
        repo.close()


def _restored_bytes(cli: CLI, snapshot: str, target: Path) -> bytes:
    cli.ok("restore", snapshot, "--target", str(target))
    return b"".join(p.read_bytes() for p in target.rglob("*") if p.is_file() and not p.is_symlink())


def test_special_files_and_a_symlink_to_root_are_neither_read_nor_followed(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("kept\n")
    os.mkfifo(src / "pipe")
    os.mknod(src / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is
    (src / "root").symlink_to("/")
    outside = _outside(tmp_path)
    (src / "away").symlink_to(outside)
    (src / "away-file").symlink_to(outside / "secret.txt")
    # A hang guard, not a timing assertion: the old walk blocked here forever.
    res = repo_cli.run("backup", str(src), "--name", "hostile", "--json", timeout=120)
    assert res.code == 0, res.err
    summary = res.json()
    assert summary["files"] == 1 and summary["bytes_read"] == len("kept\n")
    assert sorted(summary["notes"]) == [
        "pipe: special file (socket, fifo or device) not backed up",
        "zero: special file (socket, fifo or device) not backed up",
    ]
    types = _snapshot_paths(repo_cli, repo_cli.run("snapshots", "--json").json()[0]["tree"])
    assert types == {
        "ok.txt": "file",
        "root": "symlink",
        "away": "symlink",
        "away-file": "symlink",
    }
    restored = _restored_bytes(repo_cli, summary["snapshot_id"], tmp_path / "restored")
    assert SECRET not in restored


def test_a_file_swapped_for_a_fifo_or_a_device_after_listing_is_skipped_with_a_warning(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a-pipe", "b-zero", "c-link", "d-kept"):
        (src / name).write_text(f"{name}\n")
    outside = _outside(tmp_path)

    swap = swapper(src, outside)

    tree, warnings = _backup(repo_cli, src, swap)
    assert sorted(warnings) == [
        "a-pipe: became a fifo after it was listed, skipped",
        "b-zero: became a character device after it was listed, skipped",
        "c-link: became a symlink after it was listed, skipped",
    ]
    assert _snapshot_paths(repo_cli, tree) == {"d-kept": "file"}


def test_a_directory_swapped_for_a_symlink_after_listing_is_not_followed(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "mine.txt").write_text("mine\n")
    (src / "sub" / "deeper2").mkdir()
    outside = _outside(tmp_path)

    def swap(rel: str) -> None:
        if rel == "sub":  # listed and stat'ed as a directory; now it points out
            (src / "sub").rename(tmp_path / "moved-sub")
            (src / "sub").symlink_to(outside)

    tree, warnings = _backup(repo_cli, src, swap)
    assert warnings == ["sub: became a symlink after it was listed, skipped"]
    assert _snapshot_paths(repo_cli, tree) == {}


def test_a_parent_swapped_for_a_symlink_does_not_redirect_its_children(
    repo_cli: CLI, tmp_path: Path
):
    """Once a directory is open, its children are opened through it, not by path."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "secret.txt").write_text("the source's own file\n")
    outside = _outside(tmp_path)
    moved = tmp_path / "moved"

    def swap(rel: str) -> None:
        if rel == "sub/secret.txt":  # "sub" is open; by path, this name now leads outside
            (src / "sub").rename(moved)
            (src / "sub").symlink_to(outside)

    tree, warnings = _backup(repo_cli, src, swap)
    assert warnings == []
    assert _snapshot_paths(repo_cli, tree) == {"sub": "dir", "sub/secret.txt": "file"}
    snapshot = repo_cli.run("snapshots", "--json").json()[0]["id"]
    restored = _restored_bytes(repo_cli, snapshot, tmp_path / "restored")
    assert restored == b"the source's own file\n"


def test_a_source_given_as_a_symlink_is_followed_once(repo_cli: CLI, tmp_path: Path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f.txt").write_text("through the link\n")
    (real / "inner").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "no.txt").write_text("not mine\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    summary = repo_cli.ok("backup", str(link), "--name", "linked", "--json").json()
    assert summary["files"] == 1
    tree = repo_cli.run("snapshots", "--json").json()[0]["tree"]
    assert _snapshot_paths(repo_cli, tree) == {"f.txt": "file", "inner": "symlink"}


def _run_with_open_files_limit(cli: CLI, limit: int, *args: str) -> subprocess.CompletedProcess:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run(
        cli.command(*args), env=cli.env, capture_output=True, text=True,
        preexec_fn=lower, timeout=300,
    )  # fmt: skip


def test_a_wide_tree_does_not_run_out_of_descriptors(repo_cli: CLI, tmp_path: Path):
    """Queued prefetch work holds paths, not descriptors: 3000 directories, 64 descriptors."""
    src = tmp_path / "src"
    for i in range(3000):
        (src / f"d{i:04d}").mkdir(parents=True)
        (src / f"d{i:04d}" / "f").write_text(f"{i}\n")
    proc = _run_with_open_files_limit(repo_cli, 64, "backup", str(src), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["files"], summary["warnings"]) == (3000, [])


def test_a_tree_deeper_than_the_descriptor_limit_is_warned_about(repo_cli: CLI, tmp_path: Path):
    """One descriptor per directory level: past the limit, a warning (exit 3), not a crash."""
    deep = tmp_path / "src"
    path = deep
    for _ in range(100):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "bottom.txt").write_text("far down\n")
    (deep / "top.txt").write_text("up here\n")
    proc = _run_with_open_files_limit(repo_cli, 64, "backup", str(deep), "--json")
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["files"] == 1
    assert any("Too many open files" in w for w in summary["warnings"]), summary["warnings"]
