"""Worker processes: new content chunked, hashed, compressed and sealed outside the main process.

Past a threshold of bytes to read, a backup hands whole files to worker processes
(archiver/pool.py, decision 0010); below it, nothing starts. What a pool stores must
be exactly what the in-process path stores (same chunk boundaries, same blob IDs,
same packs format), and a worker killed with SIGKILL mid-backup must leave no
snapshot, a repository that passes `check --read-data`, and blobs a rerun reuses.
The kill lands at an exact point: the archiver's `before_open` seam, in the walk,
before a later file is opened, after the earlier files' results came back.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, Result, assert_no_traceback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3server import BUCKET, WEED, FaultProxy, s3_env, start_seaweed

from cleancut.archiver import pool as pool_module
from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.archiver.content import POOL_THRESHOLD
from cleancut.backend.local import LocalBackend
from cleancut.checker.check import Checker
from cleancut.errors import ExitCode, WorkerDied
from cleancut.repository.chain import snapshot_state
from cleancut.repository.chunker import WINDOW, chunk_bytes, chunk_fd_into
from cleancut.repository.config import ChunkerParams
from cleancut.repository.keys import KdfParams
from cleancut.repository.repository import Repository, init_repository
from cleancut.restorer.restore import Restorer

PARAMS = ChunkerParams(min_size=4096, avg_size=8192, max_size=32768)
WORKER_MODULE = b"cleancut.archiver.worker"


class Bench:
    """A source directory and a repository with small chunks, driven in-process."""

    def __init__(self, root: Path, pack_size: int = 1 << 20) -> None:
        self.root = root
        self.src = root / "src"
        self.src.mkdir()
        backend = LocalBackend(root / "repo")
        kdf = KdfParams(memory_kib=8 * 1024, iterations=1)
        init_repository(backend, "pw", PARAMS, kdf, pack_size=pack_size)
        self.repo = Repository.open(backend, "pw", root / "cache")

    def archiver(self, threshold: int = 0, before_open: Callable[[str], None] | None = None):
        archiver = Archiver(self.repo, self.src, BackupOptions(name="t", force_full=True))
        archiver.pool_threshold = threshold
        archiver.pool_workers = 2
        archiver.before_open = before_open
        return archiver

    def restored(self, snapshot_id: str) -> Path:
        target = Path(tempfile.mkdtemp(dir=self.root))
        Restorer(self.repo, self.repo.load_snapshot(snapshot_id), target).run()
        return target

    def content(self, snapshot_id: str, path: str) -> list[str]:
        state = snapshot_state(self.repo, self.repo.load_snapshot(snapshot_id))
        return list(state[path].content)

    def ids(self, data: bytes) -> list[str]:
        return [self.repo.keys.blob_id(c).hex() for c in chunk_bytes(data, PARAMS)]

    def check(self) -> None:
        report = Checker(self.repo).run(read_data_percent=100)
        assert report.errors == [], report.errors


@pytest.fixture
def bench(tmp_path: Path):
    b = Bench(tmp_path)
    yield b
    b.repo.close()


def worker_pids() -> list[int]:
    """This process's children that are backup workers, from /proc."""
    me = os.getpid()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat_fields[1]) == me and WORKER_MODULE in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


# Sizes where chunking turns: empty, one byte, each bound of a chunk, and a read window.
EDGES = [0, 1, 4095, 4096, 4097, 8192, 32767, 32768, 32769, 65536, 100_000]


def _data(rng: random.Random, size: int, text: bool) -> bytes:
    if text:  # compressible: stored compressed
        words = [b"agent", b"tool", b"result", b"{", b"}", b"\n", b"memory", b"turn"]
        block = b" ".join(rng.choice(words) for _ in range(4000))
        return b"".join(block + rng.randbytes(8) for _ in range(size // len(block) + 1))[:size]
    return rng.randbytes(size)


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200_000),
        st.tuples(st.integers(0, 2**32), st.integers(0, 300_000)).map(
            lambda t: random.Random(t[0]).randbytes(t[1])
        ),
    ),
    window=st.integers(1, 3 * PARAMS.max_size),
)
def test_chunking_into_one_reused_buffer_cuts_where_fresh_windows_do(data, window):
    # The worker reads every window into one buffer; the boundaries must not move.
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        buf = bytearray(PARAMS.max_size + window)
        chunks = [bytes(c) for c in chunk_fd_into(f.fileno(), PARAMS, buf)]
    assert chunks == chunk_bytes(data, PARAMS)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(
        st.one_of(st.sampled_from(EDGES), st.integers(0, 200_000)), min_size=1, max_size=8
    ),
    seed=st.integers(0, 2**32),
    big=st.sampled_from([0, WINDOW - 1, WINDOW + 1]),
)
def test_the_pool_stores_what_the_walk_would_and_restores_it(tmp_path_factory, sizes, seed, big):
    bench = Bench(tmp_path_factory.mktemp("pool"))
    try:
        rng = random.Random(seed)
        files: dict[str, bytes] = {}
        for i, size in enumerate(sizes):
            files[f"d{i % 3}/f{i}.bin"] = _data(rng, size, text=i % 2 == 0)
        files["copy.bin"] = files["d0/f0.bin"]  # equal content in two files: stored once
        if big:
            files["big.bin"] = _data(rng, big, text=True)
        for rel, data in files.items():
            (bench.src / rel).parent.mkdir(parents=True, exist_ok=True)
            (bench.src / rel).write_bytes(data)
        archiver = bench.archiver(threshold=0)
        result = archiver.run()
        if result.bytes_read:
            assert archiver.content.pool is not None  # every file went to the workers
        snap = result.snapshot.id
        assert result.files == len(files)
        assert result.bytes_read == sum(len(d) for d in files.values())
        target = bench.restored(snap)
        for rel, data in files.items():
            assert (target / rel).read_bytes() == data, rel
            # The same boundaries and IDs as chunking in this process.
            assert bench.content(snap, rel) == bench.ids(data), rel
        bench.check()
        assert worker_pids() == []  # every worker exited and was reaped
    finally:
        bench.repo.close()


def test_a_backup_below_the_threshold_starts_no_worker(bench: Bench):
    # A hot incremental's worth of changed bytes (10 MiB): read here, no pool start-up.
    (bench.src / "transcript.jsonl").write_bytes(random.Random(1).randbytes(10 << 20))
    (bench.src / "note.md").write_text("hello\n")
    seen: list[int] = []
    archiver = bench.archiver(
        threshold=POOL_THRESHOLD, before_open=lambda rel: seen.extend(worker_pids())
    )
    result = archiver.run()
    assert archiver.content.pool is None and seen == []
    assert result.bytes_read == (10 << 20) + 6
    target = bench.restored(result.snapshot.id)
    assert (target / "transcript.jsonl").read_bytes() == (
        bench.src / "transcript.jsonl"
    ).read_bytes()


def test_past_the_threshold_the_rest_goes_to_the_workers(bench: Bench):
    rng = random.Random(2)
    for i in range(6):
        (bench.src / f"f{i}.bin").write_bytes(rng.randbytes(300_000))
    seen: list[int] = []
    archiver = bench.archiver(threshold=700_000, before_open=lambda rel: seen.extend(worker_pids()))
    result = archiver.run()
    # Two files fit below the threshold, the third starts the pool.
    assert archiver.content.in_process == 600_000
    assert archiver.content.pool is not None and len(set(seen)) == 2
    target = bench.restored(result.snapshot.id)
    for i in range(6):
        assert (target / f"f{i}.bin").read_bytes() == (bench.src / f"f{i}.bin").read_bytes()
    bench.check()


def test_a_worker_killed_mid_backup_leaves_no_snapshot_and_a_rerun_reuses_its_blobs(bench: Bench):
    rng = random.Random(3)
    names = [f"f{i:02d}.bin" for i in range(12)]
    for name in names:
        (bench.src / name).write_bytes(rng.randbytes(200_000))
    killed: list[int] = []
    archiver: Archiver

    def kill_before_f08(rel: str) -> None:
        if rel != "f08.bin" or killed:
            return
        pool = archiver.content.pool
        assert pool is not None
        for worker in pool.workers:  # the first eight files' blobs are all back
            for job in list(worker.jobs.values()):
                pool.wait(job)
        victim = worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    archiver = bench.archiver(threshold=0, before_open=kill_before_f08)
    with pytest.raises(WorkerDied) as err:
        archiver.run()
    message = str(err.value)
    assert f"process {killed[0]} was killed by SIGKILL" in message and "\n" not in message
    assert err.value.exit_code == ExitCode.WORKER_DIED == 22
    assert worker_pids() == []  # the other worker was stopped and reaped too

    bench.repo.sync_cache()
    assert bench.repo.snapshots() == []  # nothing committed
    bench.check()
    # What the workers sealed before the kill is indexed: the rerun does not store it again.
    for name in names[:8]:
        data = (bench.src / name).read_bytes()
        assert all(bench.repo.has_blob(bytes.fromhex(b)) for b in bench.ids(data)), name

    rerun = bench.archiver(threshold=0).run()
    assert rerun.bytes_added < 4 * 200_000 + 64_000  # the last four files and metadata
    target = bench.restored(rerun.snapshot.id)
    for name in names:
        assert (target / name).read_bytes() == (bench.src / name).read_bytes()
    bench.check()


def _children_workers(parent: int) -> list[int]:
    """Backup workers whose parent is `parent` (a cleancut process the test started)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if ppid == parent and WORKER_MODULE in cmdline:
                found.append(int(entry.name))
    return found


def test_the_command_line_exits_22_when_a_worker_is_killed(tmp_path: Path):
    """The kill is pinned by the repository: on an object store behind the test's proxy,
    the first pack PUT that arrives once a worker exists runs the kill before it is
    forwarded. The file is 66 MiB of 1 MiB packs and at most a few packs can wait for
    the store, so the worker is still mid-file when it dies."""
    assert WEED.exists(), f"{WEED} is missing: `make test` installs the test extras"
    server = start_seaweed(tmp_path / "seaweed")
    proxy = FaultProxy(server.port)
    try:
        cli = CLI(tmp_path / "no-local-repo", tmp_path / "cache")
        cli.env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
        cli.env |= s3_env(proxy.endpoint) | {"CLEANCUT_REPO": f"s3://{BUCKET}/w"}
        cli.ok(
            "init",
            *("--kdf-memory", "8MiB", "--kdf-iterations", "1", "--pack-size", "1MiB"),
            *("--chunk-min", "64KiB", "--chunk-avg", "256KiB", "--chunk-max", "1MiB"),
        )
        src = tmp_path / "src"
        src.mkdir()
        # Past the pool threshold in one file (hex text: half of it compresses away).
        (src / "vectors.hex").write_bytes(random.Random(5).randbytes(33 << 20).hex().encode())
        backup = subprocess.Popen(
            cli.command("backup", str(src), "--json"),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed: list[int] = []
        lock = threading.Lock()

        def kill_a_worker(method: str, path: str) -> None:
            with lock:
                if killed or method != "PUT" or "/data/" not in path:
                    return
                workers = _children_workers(backup.pid)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(workers[0])

        proxy.on_request = kill_a_worker
        out, err = backup.communicate(timeout=300)
        proxy.on_request = None
        assert killed, "no worker was seen"
        assert backup.returncode == 22, err
        assert_no_traceback(Result(backup.returncode, out, err))
        assert f"backup worker process {killed[0]} was killed by SIGKILL" in err
        assert cli.ok("snapshots", "--json").json() == []
        cli.ok("check", "--read-data")
        rerun = cli.ok("backup", str(src), "--json").json()
        assert rerun["files"] == 1
        restored = tmp_path / "restored"
        cli.ok("restore", rerun["snapshot_id"], "--target", str(restored))
        assert (restored / "vectors.hex").read_bytes() == (src / "vectors.hex").read_bytes()
    finally:
        proxy.close()
        server.kill()


def test_small_files_chunked_here_while_the_workers_are_full_are_stored_as_the_pool_would(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
):
    # One file in flight per worker: while the large files are queued, a small file (one
    # blob, below the chunker's minimum) is chunked by the walk itself instead of waiting.
    # Which path takes a file depends on how fast the workers are; what is stored does not.
    monkeypatch.setattr(pool_module, "MAX_FILES", 1)
    rng = random.Random(7)
    files = {f"a/large{i}.bin": _data(rng, 150_000, text=i % 2 == 0) for i in range(3)}
    files |= {f"b/small{i:03d}.txt": _data(rng, i * 40, text=True) for i in range(100)}
    files["b/again.txt"] = files["b/small050.txt"]  # equal content on both paths: stored once
    for rel, data in files.items():
        (bench.src / rel).parent.mkdir(parents=True, exist_ok=True)
        (bench.src / rel).write_bytes(data)
    archiver = bench.archiver(threshold=0)
    result = archiver.run()
    assert archiver.content.pool is not None and archiver.content.pool.max_files == 1
    assert result.files == len(files)
    assert result.bytes_read == sum(len(d) for d in files.values())
    target = bench.restored(result.snapshot.id)
    for rel, data in files.items():
        assert (target / rel).read_bytes() == data, rel
        assert bench.content(result.snapshot.id, rel) == bench.ids(data), rel
    bench.check()
    assert worker_pids() == []


def test_files_in_flight_per_worker_follow_the_descriptor_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert pool_module.max_files(1) == 64  # a quarter of the limit
        assert pool_module.max_files(2) == 32
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 100_000), hard))
        assert pool_module.max_files(1) == min(pool_module.MAX_FILES, min(hard, 100_000) // 4)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
