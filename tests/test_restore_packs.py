"""Pack-ordered restore: each pack range read once, each blob written wherever it belongs.

Restore groups a snapshot's blobs by pack and writes each verified blob to every
offset of every file that holds it, in pack order rather than file order. These
tests hold it to the same promise as before: the target equals the source
(content, modes, times, empty and one-byte files, sparse files sparse), a blob
shared by many files or repeated within one is written everywhere, a file whose
blobs lie in packs in another order than its own comes back whole, and a restore
killed at any moment leaves no partial file under a final name.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, tree_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.archiver.saver import BlobSaver
from cleancut.backend.local import LocalBackend
from cleancut.fsio.safeio import TEMP_PREFIX
from cleancut.repository.chain import snapshot_state
from cleancut.repository.config import ChunkerParams
from cleancut.repository.keys import KdfParams
from cleancut.repository.pack import DATA, TREE
from cleancut.repository.repository import Repository, init_repository
from cleancut.repository.snapshot import Snapshot
from cleancut.repository.tree import FILE, Node, encode_tree
from cleancut.restorer import files as restore_files
from cleancut.restorer.restore import Restorer

SMALL_CHUNKS = ("--chunk-min", "1KiB", "--chunk-avg", "4KiB", "--chunk-max", "16KiB")


def _small_repo(root: Path) -> Repository:
    """A repository of small chunks and 1 MiB packs: a few MiB of data span many packs."""
    backend = LocalBackend(root / "repo")
    init_repository(
        backend,
        PASSWORD,
        ChunkerParams(1024, 4096, 16384),
        KdfParams(memory_kib=8192, iterations=1),
        pack_size=1 << 20,
    )
    return Repository.open(backend, PASSWORD, root / "cache")


def _pool(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, 96 << 10)) for _ in range(8)] + [bytes(200_000)]


# A file is a list of pieces from a shared pool (so blobs repeat across and within
# files), or one of the sizes that have no blob or one tiny one.
PIECES = st.one_of(
    st.lists(st.integers(0, 8), min_size=1, max_size=5),
    st.sampled_from([[], [-1]]),  # empty; one byte
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.dictionaries(st.from_regex(r"[a-d]{1,2}(/[a-d]{1,2})?", fullmatch=True), PIECES),
    second=st.dictionaries(st.from_regex(r"[a-d]{1,2}(/[a-d]{1,2})?", fullmatch=True), PIECES),
    seed=st.integers(0, 3),
)
def test_pack_ordered_restore_reproduces_every_snapshot_of_a_chain(
    first: dict[str, list[int]], second: dict[str, list[int]], seed: int
) -> None:
    pool = _pool(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = _small_repo(root)
        src = root / "src"
        try:
            for step, files in enumerate((first, second)):
                _write_tree(src, files, pool, step)
                snap = Archiver(repo, src, BackupOptions(name="src")).run().snapshot
                target = root / f"target{step}"
                result = Restorer(repo, snap, target).run()
                assert not result.damaged and not result.errors, result
                assert tree_state(target) == tree_state(src)
        finally:
            repo.close()


def _write_tree(src: Path, files: dict[str, list[int]], pool: list[bytes], step: int) -> None:
    """Make `src` hold exactly `files` (a path that is also a directory stays a file)."""
    if src.exists():
        subprocess.run(["rm", "-rf", str(src)], check=True)
    src.mkdir()
    for rel, pieces in sorted(files.items()):
        path = src / rel
        if path.parent != src and path.parent.exists() and not path.parent.is_dir():
            continue  # "a" is a file, so "a/b" cannot be
        if path.is_dir():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(b"\x01" if i < 0 else pool[i] for i in pieces))
        os.chmod(path, 0o600 + step)
        os.utime(path, ns=(1_700_000_000_000_000_000 + step, 1_600_000_000_123_456_789 + step))


def test_a_blob_shared_by_many_files_and_offsets_is_written_everywhere(
    cli: CLI, tmp_path: Path
) -> None:
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", *SMALL_CHUNKS)
    rng = random.Random(3)
    src = tmp_path / "src"
    (src / "copies").mkdir(parents=True)
    block = rng.randbytes(40_000)
    for i in range(300):
        (src / "copies" / f"{i:03d}").write_bytes(block)
    (src / "repeated").write_bytes(block * 60)  # one blob at many offsets of one file
    (src / "one-byte").write_bytes(b"x")
    (src / "empty").write_bytes(b"")
    cli.ok("backup", str(src))
    stats = cli.ok("stats", "--json").json()
    assert stats["dedup_ratio"] > 20  # the copies really are one blob set
    target = tmp_path / "target"
    cli.ok("restore", "latest", "--target", str(target))
    assert tree_state(target) == tree_state(src)


def test_a_file_whose_blobs_lie_in_packs_in_another_order(cli: CLI, tmp_path: Path) -> None:
    """file2 = Q + P where P was stored by an earlier backup: its first blobs are in the
    newest packs and its last ones in the oldest, and P's blobs are shared with file1."""
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", "--pack-size", "1MiB",
           *SMALL_CHUNKS)  # fmt: skip
    rng = random.Random(4)
    src = tmp_path / "src"
    src.mkdir()
    p, q = rng.randbytes(3 << 20), rng.randbytes(2 << 20)
    (src / "file1").write_bytes(p)
    cli.ok("backup", str(src))
    (src / "file2").write_bytes(q + p)
    cli.ok("backup", str(src))

    repo = Repository.open(LocalBackend(cli.repo), PASSWORD, cli.cache)
    try:
        snap = repo.find_snapshot("latest")
        state = snapshot_state(repo, snap)
        packs = [repo.locate(bytes.fromhex(b)).pack_id for b in state["file2"].content]
        old = {repo.locate(bytes.fromhex(b)).pack_id for b in state["file1"].content}
    finally:
        repo.close()
    assert packs[0] not in old and packs[-1] in old  # file order is not pack order
    assert len(set(packs)) >= 4

    target = tmp_path / "target"
    cli.ok("restore", "latest", "--target", str(target))
    assert tree_state(target) == tree_state(src)


def test_a_5_gib_sparse_file_restores_sparse(repo_cli: CLI, tmp_path: Path) -> None:
    """The snapshot a backup makes of a 5 GiB sparse file (1,280 max-size chunks, all but
    five of them one blob of zeros), written directly: backing up 5 GiB of zeros would
    take the test a minute; restoring them must take none of that."""
    chunk = 4 << 20
    count = 5 << 30 >> 22
    islands = {i * 256 + 7: os.urandom(100_000) for i in range(5)}  # chunk index -> data
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    saver = BlobSaver(repo)
    try:
        zero = saver.resolve(saver.submit(DATA, bytes(chunk))).hex()
        content = [zero] * count
        for index, data in islands.items():
            block = bytearray(chunk)
            block[12345 : 12345 + len(data)] = data
            content[index] = saver.resolve(saver.submit(DATA, bytes(block))).hex()
        node = Node("disk.img", FILE, 0o640, 1_700_000_000 * 10**9, size=count * chunk,
                    content=content)  # fmt: skip
        raw = encode_tree([node])
        tree_id = repo.keys.blob_id(raw)
        saver.resolve(saver.submit(TREE, raw, tree_id))
        saver.finish()
    finally:
        saver.close()
    summary = {"files": 1, "dirs": 1}
    snap = Snapshot(time="2026-01-01T00:00:00.000000Z", name="sparse", host="h", user="u",
                    paths=["/x"], tree=tree_id.hex(), summary=summary)  # fmt: skip
    repo.write_snapshot(snap)
    repo.close()

    target = tmp_path / "target"
    repo_cli.ok("restore", "latest", "--target", str(target))
    restored = target / "disk.img"
    assert restored.stat().st_size == 5 << 30
    assert restored.stat().st_blocks * 512 < 64 << 20  # holes, not 5 GiB of zeros
    with open(restored, "rb") as f:
        for index, data in islands.items():
            f.seek(index * chunk)
            assert f.read(12345) == bytes(12345)
            assert f.read(len(data)) == data
        f.seek((5 << 30) - 4096)
        assert f.read() == bytes(4096)


def test_a_restore_killed_midway_leaves_no_partial_file_under_a_final_name(
    cli: CLI, tmp_path: Path
) -> None:
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", "--pack-size", "1MiB",
           *SMALL_CHUNKS)  # fmt: skip
    rng = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    shared = rng.randbytes(1 << 20)
    for i in range(24):  # files spanning packs, sharing blobs, of many sizes
        (src / f"f{i:02d}").write_bytes(rng.randbytes(rng.randrange(1, 3 << 20)) + shared)
    cli.ok("backup", str(src))
    expected = {p.name: p.read_bytes() for p in src.iterdir()}

    for attempt in range(3):
        target = tmp_path / f"target{attempt}"
        target.mkdir()
        proc = subprocess.Popen(
            cli.command("restore", "latest", "--target", str(target)),
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill it once something is written (or whenever it ends first): whatever the
        # moment, every final name must hold a whole file.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(True for _ in target.iterdir()):
                time.sleep(0.01 * attempt)
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for entry in target.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                continue  # a file in progress: never under its final name
            assert entry.read_bytes() == expected[entry.name], entry.name

        # A second restore into the same target replaces everything and leaves no temp
        # file of its own (the killed one's stay: they are not restore's to guess at).
        killed_temps = {e.name for e in target.iterdir() if e.name.startswith(TEMP_PREFIX)}
        cli.ok("restore", "latest", "--target", str(target))
        for name, data in expected.items():
            assert (target / name).read_bytes() == data
        temps = {e.name for e in target.iterdir() if e.name.startswith(TEMP_PREFIX)}
        assert temps == killed_temps


def test_check_read_data_still_reads_every_blob_restore_reads(cli: CLI, tmp_path: Path) -> None:
    """The new read path shares its verification with check: a flipped byte in a pack is
    found by `check --read-data` and refused by restore, with the damaged exit code."""
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", *SMALL_CHUNKS)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(6)
    for i in range(8):
        (src / f"f{i}").write_bytes(rng.randbytes(50_000))
    cli.ok("backup", str(src))
    cli.ok("check", "--read-data")
    pack = max((p for p in (cli.repo / "data").rglob("*") if p.is_file()), key=os.path.getsize)
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0x40
    pack.write_bytes(bytes(data))
    assert cli.run("check", "--read-data").code == 4
    target = tmp_path / "target"
    res = cli.run("restore", "latest", "--target", str(target))
    assert res.code == 4, res.err
    assert "damaged:" in res.err
    restored = {p.name for p in target.iterdir()}
    assert not any(n.startswith(TEMP_PREFIX) for n in restored)
    for name in restored:  # whatever was restored is whole
        assert (target / name).read_bytes() == (src / name).read_bytes()
    assert len(restored) < 8


def test_files_waiting_for_later_packs_are_reopened_by_name_when_many_are_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 files share a head stored by an earlier backup, so all of them are in progress
    once its pack is written; with room for 4 open descriptors, the others are closed
    after each write and reopened by their temporary names, and all come back whole."""
    monkeypatch.setattr(restore_files, "OPEN_MAX", 4)
    rng = random.Random(7)
    head = rng.randbytes(64 << 10)
    repo = _small_repo(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    try:
        (src / "head").write_bytes(head)
        Archiver(repo, src, BackupOptions(name="src")).run()
        for i in range(40):
            (src / f"f{i:02d}").write_bytes(head + rng.randbytes(rng.randrange(1, 200_000)))
        snap = Archiver(repo, src, BackupOptions(name="src")).run().snapshot
        target = tmp_path / "target"
        result = Restorer(repo, snap, target).run()
    finally:
        repo.close()
    assert not result.damaged and not result.errors
    assert result.files == 41
    assert tree_state(target) == tree_state(src)
