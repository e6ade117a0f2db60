"""How a repository is reached: bandwidth caps and append-only access.

The cap is a promise about the average rate of a transfer; append-only is a
promise that an agent host cannot destroy its own history. Both are checked
through real transfers and real commands on a local repository here (the same
wrappers sit in front of the object store: tests/test_s3.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import CLI, assert_no_traceback, tree_state

from cleancut.backend.local import LocalBackend
from cleancut.backend.throttle import ThrottledBackend, TokenBucket
from cleancut.errors import AppendOnly


class _Clock:
    """Time that passes only when something sleeps or a transfer is charged: the bucket's
    arithmetic, checked without the machine's load in the figures."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("cap_mbit", [40.0, 160.0])
@pytest.mark.parametrize("transfer_s", [0.0, 0.01])
def test_the_bucket_paces_24_mib_to_within_ten_percent_of_the_cap(
    cap_mbit: float, transfer_s: float
) -> None:
    clock = _Clock()
    bucket = TokenBucket(cap_mbit, clock.monotonic, clock.sleep)
    started = clock.now
    for _ in range(24):
        bucket.take(1 << 20)
        clock.now += transfer_s  # the object's own time on the wire
    rate_mbit = 24 * (1 << 20) * 8 / 1e6 / (clock.now - started)
    assert 0.9 * cap_mbit <= rate_mbit <= 1.1 * cap_mbit, rate_mbit


@pytest.mark.parametrize("cap_mbit", [40.0, 160.0])
def test_upload_cap_is_never_exceeded_over_24_mib(tmp_path: Path, cap_mbit: float) -> None:
    """On the real clock only the upper bound is the product's to keep: a loaded machine
    can make the transfer slower than the cap, never faster."""
    backend = ThrottledBackend(LocalBackend(tmp_path / "objects"), cap_mbit, None)
    payload = os.urandom(1 << 20)
    started = time.monotonic()
    for i in range(24):
        backend.put(f"data/{i:02d}", payload)
    elapsed = time.monotonic() - started
    rate_mbit = 24 * len(payload) * 8 / 1e6 / elapsed
    assert rate_mbit <= 1.1 * cap_mbit, rate_mbit


def test_download_cap_is_never_exceeded(tmp_path: Path) -> None:
    inner = LocalBackend(tmp_path / "objects")
    payload = os.urandom(1 << 20)
    for i in range(24):
        inner.put(f"data/{i:02d}", payload)
    backend = ThrottledBackend(inner, None, 80.0)
    started = time.monotonic()
    total = sum(len(backend.get(f"data/{i:02d}")) for i in range(24))
    rate_mbit = total * 8 / 1e6 / (time.monotonic() - started)
    assert rate_mbit <= 88.0, rate_mbit


def test_backup_with_limit_upload_is_paced_and_restores(
    repo_cli: CLI, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "blob").write_bytes(os.urandom(24 << 20))
    started = time.monotonic()
    repo_cli.ok("backup", str(source), "--limit-upload", "96")
    elapsed = time.monotonic() - started
    # 24 MiB at 96 Mbit/s (12 MB/s) takes at least 2 s; unthrottled it takes a fraction.
    assert elapsed >= 24 * (1 << 20) * 8 / 96e6 * 0.9, elapsed
    repo_cli.ok("restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_state(tmp_path / "out") == tree_state(source)
    res = repo_cli.run("backup", str(source), "--limit-upload", "fast")
    assert res.code == 2 and "--limit-upload" in res.err


def test_append_only_backs_up_but_never_deletes(repo_cli: CLI, workspace: Path,
                                                tmp_path: Path) -> None:
    for _ in range(2):
        repo_cli.ok("backup", str(workspace), "--append-only", "--full")
        (workspace / "MEMORY.md").write_text(f"changed {time.time_ns()}")
    before = sorted(p.relative_to(repo_cli.repo) for p in repo_cli.repo.rglob("*") if p.is_file())
    for args in (
        ("forget", "--keep-last", "1", "--append-only"),
        ("prune", "--append-only"),
        ("repair", "index", "--append-only"),
    ):
        res = repo_cli.run(*args)
        assert res.code == 16, (args, res.err)
        assert "append-only" in res.err
        assert_no_traceback(res)
    after = sorted(p.relative_to(repo_cli.repo) for p in repo_cli.repo.rglob("*") if p.is_file())
    assert before == after
    listed = json.loads(repo_cli.ok("snapshots", "--json", "--append-only").out)
    assert len(listed) == 2
    # From a trusted host (no --append-only) the same commands work.
    repo_cli.ok("forget", "--keep-last", "1", "--prune")
    assert len(json.loads(repo_cli.ok("snapshots", "--json").out)) == 1


def test_append_only_never_overwrites(tmp_path: Path) -> None:
    from cleancut.backend.appendonly import AppendOnlyBackend

    inner = LocalBackend(tmp_path / "objects")
    backend = AppendOnlyBackend(inner)
    backend.put("snapshots/a", b"first")
    backend.put("snapshots/a", b"second")
    assert inner.get("snapshots/a") == b"first"
    with pytest.raises(AppendOnly):
        backend.delete("snapshots/a")
    assert inner.exists("snapshots/a")
