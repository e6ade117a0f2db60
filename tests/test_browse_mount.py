"""`cleancut mount`: a real FUSE mount read through the kernel, as an operator would.

Each test starts `cleancut mount` as its own process, waits for the line it prints once
the kernel has mounted it, reads through the mountpoint, and ends it by a signal; the
mount table (/proc/self/mountinfo) says whether the mountpoint was released.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, tree_state

from cleancut.backend.local import LocalBackend
from cleancut.browse.mount import mounted_paths
from cleancut.repository.chain import snapshot_state
from cleancut.repository.pack import pack_name
from cleancut.repository.repository import Repository
from cleancut.testing.sample import mutate_workspace

MiB = 1 << 20


class Mount:
    def __init__(self, proc: subprocess.Popen[bytes], where: Path) -> None:
        self.proc = proc
        self.where = where

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, dict[str, object], str]:
        """Signal the mount; its exit code, its --json outcome and its stderr."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, json.loads(out) if out.strip() else {}, err.decode()


@contextmanager
def mounted(cli: CLI, where: Path) -> Iterator[Mount]:
    where.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        cli.command("mount", str(where), "--json"),
        env=cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # printed once the kernel has mounted it
    assert "mounted at" in line, line + proc.stderr.read().decode()
    mount = Mount(proc, where)
    try:
        yield mount
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if str(where) in mounted_paths():
            subprocess.run(["fusermount3", "-u", str(where)], check=False)


def _backup(cli: CLI, source: Path) -> dict[str, object]:
    result: dict[str, object] = cli.ok("backup", str(source), "--name", "agent", "--json").json()
    return result


def _snapshot_dirs(root: Path) -> list[Path]:
    """The source's snapshot directories in the mount (not `latest`), oldest first."""
    return sorted(p for p in (root / "snapshots" / "agent").iterdir() if not p.is_symlink())


def test_every_snapshot_reads_back_as_backed_up_and_sigterm_unmounts(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    os.chmod(workspace / "workspace" / "SOUL.md", 0o640)
    (workspace / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(workspace / "run.sh", 0o755)
    (workspace / "empty").write_bytes(b"")
    (workspace / "dangling").symlink_to("does/not/exist")
    os.utime(workspace / "run.sh", ns=(1_600_000_000_123_456_789,) * 2)
    _backup(repo_cli, workspace)
    first = tmp_path / "first"
    shutil.copytree(workspace, first, symlinks=True)
    mutate_workspace(workspace)
    (workspace / "added-later.txt").write_text("only in the incremental\n")
    _backup(repo_cli, workspace)
    kinds = [s["kind"] for s in repo_cli.ok("snapshots", "--json").json()]
    assert kinds == ["full", "incremental"]

    where = tmp_path / "mnt"
    with mounted(repo_cli, where) as mount:
        assert str(where) in mounted_paths()
        dirs = _snapshot_dirs(where)
        assert len(dirs) == 2
        assert tree_state(dirs[0]) == tree_state(first)
        assert tree_state(dirs[1]) == tree_state(workspace)  # the chain, replayed
        latest = where / "snapshots" / "agent" / "latest"
        assert latest.is_symlink() and os.readlink(latest) == dirs[1].name
        source, seen = (workspace / "run.sh").lstat(), (latest / "run.sh").lstat()
        assert (seen.st_mode, seen.st_size, seen.st_mtime_ns, seen.st_uid) == (
            source.st_mode,
            source.st_size,
            source.st_mtime_ns,
            source.st_uid,
        )
        with pytest.raises(OSError) as refused:
            (latest / "new.txt").write_text("x")
        assert refused.value.errno == errno.EROFS
        code, outcome, err = mount.stop(signal.SIGTERM)
    assert code == 0, err
    assert str(where) not in mounted_paths()
    assert os.listdir(where) == []  # the mountpoint is a plain empty directory again
    assert outcome["snapshots"] == 2 and outcome["replays"] == 2


def test_a_read_at_an_offset_fetches_only_the_blobs_it_covers(
    repo_cli: CLI, tmp_path: Path
) -> None:
    source = tmp_path / "agent"
    source.mkdir()
    big = source / "sparse.img"
    with open(big, "wb") as f:  # 64 MiB: three 12 MiB islands of random bytes, holes between
        f.truncate(64 * MiB)
        for at in (0, 24 * MiB, 48 * MiB):
            f.seek(at)
            f.write(os.urandom(12 * MiB))
    _backup(repo_cli, source)
    (source / "note.txt").write_text("an incremental\n")
    _backup(repo_cli, source)

    where = tmp_path / "mnt"
    with mounted(repo_cli, where) as mount:
        inside = where / "snapshots" / "agent" / "latest" / "sparse.img"
        assert inside.stat().st_size == 64 * MiB
        fd = os.open(inside, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 54 * MiB + 123) == _pread(big, 4096, 54 * MiB + 123)
            assert os.pread(fd, 4096, 16 * MiB) == bytes(4096)  # in a hole
        finally:
            os.close(fd)
        code, outcome, err = mount.stop(signal.SIGINT)
    assert code == 0, err
    read = outcome["read"]
    assert isinstance(read, dict)
    # The random data is 36 MiB in blobs of at most 4 MiB; the two reads (and the
    # kernel's read-ahead) touch two blobs of it at most, and a block of zeros.
    assert read["blobs_fetched"] <= 5
    assert read["bytes_fetched"] < 12 * MiB
    assert outcome["replays"] == 1  # only the snapshot looked into was replayed


def _pread(path: Path, length: int, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_sigkill_leaves_a_stale_mount_that_fusermount3_clears(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    _backup(repo_cli, workspace)
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    for place, why in ((full, "not empty"), (tmp_path / "absent", "does not exist")):
        res = repo_cli.run("mount", str(place))
        assert res.code == 20 and why in res.err and len(res.err.splitlines()) == 1, res.err
    where = tmp_path / "mnt"
    with mounted(repo_cli, where) as mount:
        busy = repo_cli.run("mount", str(where))
        assert busy.code == 20 and "busy" in busy.err and len(busy.err.splitlines()) == 1
        mount.proc.kill()
        mount.proc.wait()
        with pytest.raises(OSError) as stale:
            os.listdir(where)
        assert stale.value.errno == errno.ENOTCONN
        again = repo_cli.run("mount", str(where))
        assert again.code == 20, again.err
        assert "fusermount3 -u" in again.err and len(again.err.splitlines()) == 1
        subprocess.run(["fusermount3", "-u", str(where)], check=True)
    assert str(where) not in mounted_paths()
    with mounted(repo_cli, where) as mount:  # usable again
        assert (where / "snapshots" / "agent" / "latest").is_symlink()
        code, _, err = mount.stop(signal.SIGINT)
    assert code == 0, err
    assert str(where) not in mounted_paths()


def test_a_background_mount_returns_once_mounted_and_ends_at_unmount(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    _backup(repo_cli, workspace)
    where = tmp_path / "mnt"
    where.mkdir()
    started = repo_cli.ok("mount", "--background", str(where), "--json").json()
    try:
        assert started["mounted"] and str(where) in mounted_paths()
        soul = where / "snapshots" / "agent" / "latest" / "workspace" / "SOUL.md"
        assert soul.read_bytes() == (workspace / "workspace" / "SOUL.md").read_bytes()
    finally:
        subprocess.run(["fusermount3", "-u", str(where)], check=True)
    assert str(where) not in mounted_paths()
    try:
        done = os.pidfd_open(started["pid"])
    except ProcessLookupError:
        return  # it has ended already
    select.select([done], [], [])  # readable once the process has ended
    os.close(done)


def _damage_blob_of(cli: CLI, rel: str) -> None:
    """Flip one byte inside the first blob of `rel` (latest snapshot) in its pack."""
    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        node = snapshot_state(repo, repo.find_snapshot("latest"))[rel]
        loc = repo.locate(bytes.fromhex(node.content[0]))
    finally:
        repo.close()
    pack = cli.repo / pack_name(loc.pack_id)
    os.chmod(pack, 0o600)
    with open(pack, "r+b") as f:
        f.seek(loc.entry.offset + loc.entry.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_data_is_an_io_error_and_one_line_and_the_mount_stays_up(
    repo_cli: CLI, workspace: Path, tmp_path: Path
) -> None:
    _backup(repo_cli, workspace)
    _damage_blob_of(repo_cli, "workspace/SOUL.md")
    where = tmp_path / "mnt"
    with mounted(repo_cli, where) as mount:
        latest = where / "snapshots" / "agent" / "latest"
        with pytest.raises(OSError) as damaged:
            (latest / "workspace" / "SOUL.md").read_bytes()
        assert damaged.value.errno == errno.EIO
        tools = (latest / "workspace" / "TOOLS.md").read_bytes()
        assert tools == (workspace / "workspace" / "TOOLS.md").read_bytes()
        code, outcome, err = mount.stop(signal.SIGTERM)
    assert code == 0, err
    problems = outcome["problems"]
    assert isinstance(problems, list) and problems
    assert all("failed authentication" in p for p in problems), problems
    assert "failed authentication" in err and "Traceback" not in err
    dumped = repo_cli.run("dump", "latest", "workspace/SOUL.md")
    assert dumped.code == 4 and "failed authentication" in dumped.err
    assert len(dumped.err.splitlines()) == 1
