"""Tail blobs: a file that grew stores only its new bytes, and always restores exactly.

An incremental keeps the previous version's blobs a file still holds (checked by hash)
and chunks only what follows; a full chunks every such file again from the start.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
from pathlib import Path

import pytest
from conftest import CLI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.archiver.tail import MERGE_BELOW
from cleancut.backend.local import LocalBackend
from cleancut.checker.check import Checker
from cleancut.repository.chain import snapshot_state
from cleancut.repository.chunker import chunk_bytes
from cleancut.repository.config import ChunkerParams
from cleancut.repository.keys import KdfParams
from cleancut.repository.repository import Repository, init_repository
from cleancut.restorer.restore import Restorer

SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)
# Chunks that may exceed MERGE_BELOW, so some tails stay blobs of their own.
MEDIUM = ChunkerParams(min_size=4096, avg_size=8192, max_size=32768)
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


class Bench:
    """A source directory and a repository with small chunks, driven in-process."""

    def __init__(self, root: Path, params: ChunkerParams = SMALL) -> None:
        self.src = root / "src"
        self.src.mkdir()
        self.root = root
        backend = LocalBackend(root / "repo")
        self.params = params
        init_repository(backend, "pw", params, KdfParams(memory_kib=8 * 1024, iterations=1))
        self.repo = Repository.open(backend, "pw", root / "cache")
        self.minute = 0

    def backup(self, force_full: bool = False) -> dict[str, object]:
        self.minute += 1
        moment = T0 + dt.timedelta(minutes=self.minute)
        os.environ["CLEANCUT_NOW"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            options = BackupOptions(name="t", force_full=force_full)
            return Archiver(self.repo, self.src, options).run().summary()
        finally:
            del os.environ["CLEANCUT_NOW"]

    def content(self, snapshot_id: str, path: str) -> list[str]:
        state = snapshot_state(self.repo, self.repo.load_snapshot(snapshot_id))
        return list(state[path].content)

    def restored(self, snapshot_id: str, path: str) -> bytes:
        target = Path(tempfile.mkdtemp(dir=self.root))
        Restorer(self.repo, self.repo.load_snapshot(snapshot_id), target).run()
        return (target / path).read_bytes()

    def cdc_ids(self, data: bytes) -> list[str]:
        return [self.repo.keys.blob_id(c).hex() for c in chunk_bytes(data, self.params)]


@pytest.fixture
def bench(tmp_path: Path):
    b = Bench(tmp_path)
    yield b
    b.repo.close()


def test_a_grown_file_keeps_its_blobs_and_stores_only_the_tail(bench: Bench):
    log = bench.src / "session.jsonl"
    body = b"".join(
        b'{"turn": %d, "text": "%s"}\n' % (i, random.Random(i).randbytes(40).hex().encode())
        for i in range(400)
    )
    log.write_bytes(body)
    first = bench.backup()
    before = bench.content(str(first["snapshot_id"]), "session.jsonl")
    assert len(before) > 3  # several content-defined blobs

    line = b'{"turn": 400, "text": "one more line"}\n'
    with log.open("ab") as f:
        f.write(line)
    second = bench.backup()
    assert second["kind"] == "incremental"
    after = bench.content(str(second["snapshot_id"]), "session.jsonl")
    last = bench.repo.cache.find_blob(bytes.fromhex(before[-1]))
    assert last is not None
    merged = last.entry.raw_length < MERGE_BELOW
    # A small last blob is stored again with the tail, never left beside it.
    kept = len(before) - 1 if merged else len(before)
    assert after[:kept] == before[:kept]
    assert 1 <= len(after) - kept <= 2  # the tail, chunked from where the kept blobs end
    # The tail (with a small last blob), the delta and the pack headers: never the file.
    again = last.entry.raw_length if merged else 0
    assert int(second["bytes_added"]) < again + len(line) + 2048
    assert bench.restored(str(second["snapshot_id"]), "session.jsonl") == body + line


def test_a_file_rewritten_in_place_and_grown_is_never_taken_for_an_append(bench: Bench):
    db = bench.src / "memory.db"
    body = os.urandom(20_000)
    db.write_bytes(body)
    bench.backup()
    changed = bytearray(body)
    changed[5] ^= 0xFF  # a header page rewritten, as SQLite does on every commit
    changed += os.urandom(3000)
    st = os.stat(db)
    db.write_bytes(bytes(changed))
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old mtime
    second = bench.backup()
    assert bench.restored(str(second["snapshot_id"]), "memory.db") == bytes(changed)
    assert bench.content(str(second["snapshot_id"]), "memory.db") == bench.cdc_ids(bytes(changed))


def test_a_full_restores_content_defined_boundaries(tmp_path: Path):
    # Appends between MERGE_BELOW and the minimum chunk: each stays a small blob of its own.
    bench = Bench(tmp_path, ChunkerParams(min_size=16384, avg_size=32768, max_size=65536))
    rng = random.Random(7)
    log = bench.src / "log.txt"
    data = rng.randbytes(40_000)
    log.write_bytes(data)
    bench.backup()
    for _ in range(5):
        more = rng.randbytes(MERGE_BELOW + 500)  # each tail too big to merge: it stays a blob
        data += more
        with log.open("ab") as f:
            f.write(more)
        inc = bench.backup()
        assert inc["kind"] == "incremental"
    assert bench.content(str(inc["snapshot_id"]), "log.txt") != bench.cdc_ids(data)
    full = bench.backup(force_full=True)
    assert full["kind"] == "full"
    assert bench.content(str(full["snapshot_id"]), "log.txt") == bench.cdc_ids(data)
    assert bench.restored(str(full["snapshot_id"]), "log.txt") == data
    bench.repo.close()


edits = st.one_of(
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=12_000)),
    st.tuples(st.just("write"), st.integers(0, 40_000), st.binary(min_size=1, max_size=500)),
    st.tuples(st.just("truncate"), st.integers(0, 40_000)),
    st.tuples(st.just("full")),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=20_000), st.lists(edits, min_size=1, max_size=6), st.booleans())
def test_every_snapshot_restores_what_the_file_held_and_reads_back_clean(
    start: bytes, steps: list[tuple], medium: bool
):
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), MEDIUM if medium else SMALL)
        try:
            path = bench.src / "f"
            path.write_bytes(start)
            taken = [(bench.backup(), start)]
            data = start
            for step in steps:
                if step[0] == "append":
                    data += step[1]
                elif step[0] == "write":
                    at = min(step[1], len(data))
                    data = data[:at] + step[2] + data[at + len(step[2]) :]
                elif step[0] == "truncate":
                    data = data[: step[1]]
                path.write_bytes(data)
                taken.append((bench.backup(force_full=step[0] == "full"), data))
            for summary, expected in taken:
                assert bench.restored(str(summary["snapshot_id"]), "f") == expected
            report = Checker(bench.repo).run(read_data_percent=100)
            assert report.errors == []
        finally:
            bench.repo.close()


def test_check_read_data_verifies_tail_blobs(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "agent"
    src.mkdir()
    log = src / "transcript.jsonl"
    # Seeded: where content-defined chunking cuts decides whether the last blob is small
    # enough to be merged with the tail (MERGE_BELOW), so the data must not vary by run.
    log.write_bytes(random.Random(7).randbytes(300_000))
    repo_cli.ok("backup", str(src))
    for i in range(3):
        with log.open("ab") as f:
            f.write(b'{"turn": %d}\n' % i)
        summary = repo_cli.ok("backup", str(src), "--json").json()
        assert summary["kind"] == "incremental"
        # The tail, the tree and the index entries; plus, at most, a small last blob
        # stored again with the tail (the documented bound of an append).
        assert summary["bytes_added"] < 4096 + MERGE_BELOW
    report = repo_cli.ok("check", "--read-data", "--json").json()
    assert report["ok"] and report["blobs_read"] > 0
    target = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(target))
    assert (target / "transcript.jsonl").read_bytes() == log.read_bytes()
