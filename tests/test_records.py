"""Operational records: check authenticates each one, and prune bounds their growth."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from conftest import CLI, PASSWORD

from cleancut.backend.local import LocalBackend
from cleancut.backend.location import backend_for
from cleancut.clock import from_iso, iso
from cleancut.repository.records import (
    BACKUP_ATTEMPT,
    RECORDS_PREFIX,
    RESTORE_TEST,
    compact_records,
    list_records,
    write_record,
)
from cleancut.repository.repository import Repository

NOW = from_iso("2027-03-01T00:00:00.000000Z")


def _attempt(repo: Repository, days_ago: float, name: str = "agent", **fields: object) -> str:
    when = iso(NOW - timedelta(days=days_ago))
    record = {"type": BACKUP_ATTEMPT, "time": when, "name": name, "ok": True, "snapshot": None}
    return write_record(repo, record | fields)


def test_prune_drops_old_records_nothing_reads(repo_cli: CLI, tmp_path: Path):
    repo = Repository.open(backend_for(str(repo_cli.repo)), PASSWORD, tmp_path / "c")
    try:
        old = [_attempt(repo, 200 - i) for i in range(40)]  # a year of history, say
        newest_ok_elsewhere = _attempt(repo, 100, name="retired")
        misses = [_attempt(repo, 60 - i, quiesce_missed=True, ok=False) for i in range(3)]
        recent = [_attempt(repo, d) for d in (10, 1)]
        stuck = [_attempt(repo, 50 - i, name="stuck", quiesce_missed=True) for i in range(3)]
        tested = write_record(
            repo,
            {"type": RESTORE_TEST, "time": iso(NOW - timedelta(days=90)), "name": "agent",
             "snapshot": "s" * 64, "passed": False},
        )  # fmt: skip
        unknown = write_record(repo, {"type": "from-a-newer-version", "time": "2020-01-01"})

        gone = compact_records(repo, NOW, snapshots={"s" * 64})
        left = {r["id"] for r in list_records(repo)}
    finally:
        repo.close()
    # Gone: old attempts, and old quiesce misses that a later good attempt ended.
    assert gone == len(old) + len(misses)
    assert not left & (set(old) | set(misses))
    # Kept: the recent window, the newest per source, an unbroken run of quiesce misses
    # up to the newest attempt (status counts it), a test of a snapshot that exists,
    # and types this version does not know.
    assert set(recent) <= left and newest_ok_elsewhere in left and set(stuck) <= left
    assert tested in left and unknown in left
    assert len(list((repo_cli.repo / RECORDS_PREFIX).iterdir())) == len(left)


def test_prune_reports_the_records_it_deleted(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    report = repo_cli.ok("prune", "--json").json()
    assert report["records_deleted"] == 0


class _CountingBackend(LocalBackend):
    """The real local backend, counting whole-object reads under records/."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.record_reads = 0

    def get(self, name: str) -> bytes:
        if name.startswith(RECORDS_PREFIX):
            self.record_reads += 1
        return super().get(name)


def test_each_record_is_read_once_per_open_repository(repo_cli: CLI, tmp_path: Path):
    """Status, history and metrics each list the records on every daemon tick: a record
    is immutable (its name is its hash), so after the first listing only new ones are
    read, every caller gets its own copy, and a deleted record drops out."""
    backend = _CountingBackend(repo_cli.repo)
    repo = Repository.open(backend, PASSWORD, tmp_path / "c")
    try:
        first, second = _attempt(repo, 2), _attempt(repo, 1)
        assert [r["id"] for r in list_records(repo)] == [first, second]
        assert backend.record_reads == 2

        mine = list_records(repo)
        mine[0]["ok"] = False  # a caller changing its copy changes no other caller's
        third = _attempt(repo, 0.5)
        again = list_records(repo, BACKUP_ATTEMPT)
        assert [r["id"] for r in again] == [first, second, third]
        assert again[0]["ok"] is True
        assert backend.record_reads == 3  # only the new one was read

        (repo_cli.repo / RECORDS_PREFIX / second).unlink()
        assert [r["id"] for r in list_records(repo)] == [first, third]
    finally:
        repo.close()

    # The next process (a backup's plan, say) finds them in the local cache.
    counted = _CountingBackend(repo_cli.repo)
    fresh = Repository.open(counted, PASSWORD, tmp_path / "c")
    try:
        assert [r["id"] for r in list_records(fresh)] == [first, third]
        assert counted.record_reads == 0
    finally:
        fresh.close()


def test_check_reads_every_record_afresh_whatever_was_cached(repo_cli: CLI, tmp_path: Path):
    """The cache saves reads for those who list records; check authenticates each one
    from the repository, so a record damaged after it was cached is still found."""
    repo = Repository.open(backend_for(str(repo_cli.repo)), PASSWORD, repo_cli.cache)
    try:
        rid = _attempt(repo, 1)
        assert [r["id"] for r in list_records(repo)] == [rid]  # read, verified, cached
    finally:
        repo.close()
    stored = repo_cli.repo / RECORDS_PREFIX / rid
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    result = repo_cli.run("check")
    assert result.code == 4, result.err
    assert rid[:12] in result.out + result.err
