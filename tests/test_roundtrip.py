"""The round trip an operator relies on: back up, change, back up, restore, compare."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import CLI, tree_state

from cleancut.testing.sample import mutate_workspace


def test_restore_reproduces_the_source_exactly(repo_cli: CLI, workspace: Path, tmp_path: Path):
    os.chmod(workspace / "workspace" / "SOUL.md", 0o640)
    (workspace / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(workspace / "exec.sh", 0o755)
    (workspace / "empty.txt").write_bytes(b"")
    (workspace / "dangling").symlink_to("does/not/exist")
    os.utime(workspace / "exec.sh", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    summary = repo_cli.ok("backup", str(workspace), "--json").json()
    for key in (
        "snapshot_id",
        "files",
        "dirs",
        "bytes_read",
        "bytes_added",
        "duration_s",
        "warnings",
    ):
        assert key in summary
    assert summary["warnings"] == []
    assert summary["files"] == sum(
        1 for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()
    )

    target = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(target))
    assert tree_state(target) == tree_state(workspace)
    assert (
        subprocess.run(["diff", "-r", "--no-dereference", str(workspace), str(target)]).returncode
        == 0
    )


def test_second_snapshot_stores_only_the_change(repo_cli: CLI, workspace: Path, tmp_path: Path):
    first = repo_cli.ok("backup", str(workspace), "--json").json()
    time.sleep(0.01)
    mutate_workspace(workspace)
    second = repo_cli.ok("backup", str(workspace), "--json").json()
    assert second["bytes_added"] < first["bytes_added"] / 4
    target = tmp_path / "restored"
    repo_cli.ok("restore", second["snapshot_id"][:10], "--target", str(target))
    assert tree_state(target) == tree_state(workspace)

    changes = repo_cli.ok("diff", first["snapshot_id"], second["snapshot_id"], "--json").json()
    kinds = {c["path"]: c["kind"] for c in changes["changes"]}
    assert kinds["workspace/memory/2026-11-05.md"] == "M"
    assert any(k == "-" and p.startswith("state/delivery-queue/") for p, k in kinds.items())


def test_unchanged_files_are_not_read_again(repo_cli: CLI, workspace: Path):
    old = time.time() - 3600
    for path in workspace.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (old, old))
    repo_cli.ok("backup", str(workspace), "--json")
    again = repo_cli.ok("backup", str(workspace), "--json").json()
    assert again["bytes_read"] == 0
    assert again["files_unchanged"] == again["files"]
    assert again["bytes_added"] < 1024  # an (empty) delta manifest at most

    note = workspace / "workspace" / "MEMORY.md"
    note.write_text(note.read_text() + "one more line\n")
    third = repo_cli.ok("backup", str(workspace), "--json").json()
    assert third["bytes_read"] == note.stat().st_size
    assert third["files_changed"] == 1


def test_a_file_modified_within_the_racy_window_is_read_again(repo_cli: CLI, workspace: Path):
    # Files written just before a scan may change again within the same clock tick, so a
    # file whose mtime is not older than the parent's scan start (less a 2 s window) is
    # read again. Dated a minute ahead, every file is inside the window whatever the
    # machine's load makes of the time between the two backups.
    ahead = time.time() + 60
    for path in workspace.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (ahead, ahead))
    repo_cli.ok("backup", str(workspace), "--json")
    again = repo_cli.ok("backup", str(workspace), "--json").json()
    assert again["files_unchanged"] == 0
    assert again["bytes_added"] < 1024  # re-read, but deduplicated: only a delta manifest


def test_snapshots_listing_and_selection(repo_cli: CLI, workspace: Path, tmp_path: Path):
    a = repo_cli.ok("backup", str(workspace), "--name", "agent-a", "--tag", "x", "--json").json()
    b = repo_cli.ok("backup", str(workspace), "--name", "agent-b", "--json").json()
    listing = repo_cli.ok("snapshots", "--json").json()
    assert [s["id"] for s in listing] == [a["snapshot_id"], b["snapshot_id"]]
    for key in ("id", "time", "name", "host", "tags", "paths", "kind", "parent"):
        assert key in listing[0]
    assert listing[0]["tags"] == ["x"] and listing[0]["name"] == "agent-a"
    assert listing[0]["paths"] == [str(workspace)]
    only_a = repo_cli.ok("snapshots", "--name", "agent-a", "--json").json()
    assert [s["id"] for s in only_a] == [a["snapshot_id"]]

    res = repo_cli.run("restore", "ffffffffff", "--target", str(tmp_path / "x"))
    assert res.code == 2 and "no snapshot matches" in res.err


def test_exclude_and_include(repo_cli: CLI, workspace: Path, tmp_path: Path):
    repo_cli.ok("backup", str(workspace), "--exclude", "*.sqlite", "--exclude", "workspace/memory")
    names = {e["path"] for e in repo_cli.ok("ls", "latest", "--json").json()}
    assert "state/memory/main.sqlite" not in names
    assert "workspace/memory" not in names
    assert "workspace/MEMORY.md" in names

    target = tmp_path / "partial"
    repo_cli.ok("restore", "latest", "--target", str(target), "--include", "workspace/SOUL.md")
    files = [p for p in target.rglob("*") if p.is_file()]
    assert [p.relative_to(target).as_posix() for p in files] == ["workspace/SOUL.md"]


def test_ls_of_a_path(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    entries = repo_cli.ok("ls", "latest", "workspace/memory", "--json").json()
    assert entries[0]["path"] == "workspace/memory" and entries[0]["type"] == "dir"
    assert len(entries) == 6
    text = repo_cli.ok("ls", "latest").out
    assert "workspace/CURRENT.md -> MEMORY.md" in text


def test_stats_report_dedup_and_compression(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    repo_cli.ok("backup", str(workspace), "--name", "copy")
    stats = repo_cli.ok("stats", "--json").json()
    assert stats["snapshots"] == 2
    assert stats["dedup_ratio"] >= 1.9
    assert stats["compression_ratio"] > 1.5
    assert stats["blobs"] > 0 and stats["packs"] >= 1
    assert stats["logical_bytes"] > stats["stored_bytes"]


def test_large_file_spans_many_chunks_and_round_trips(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20) + bytes(9 << 20) + os.urandom(5 << 20)
    (src / "big.bin").write_bytes(data)
    summary = repo_cli.ok("backup", str(src), "--json").json()
    assert summary["bytes_read"] == len(data)
    repo_cli.ok("restore", "latest", "--target", str(tmp_path / "out"))
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
