"""Restore's pack reader and its directory work spread over threads.

- `coalesce` (repository/packread.py) cuts a pack's needed blobs into ranges: every blob
  in exactly one range, in offset order, no range over RUN_MAX unless it is one blob,
  no skipped gap over GAP_MAX (a property test over random layouts).
- `PackReader.read` hands back each blob verified, and names why a blob cannot be had
  (a missing pack, a damaged box) without hiding its neighbours (a real repository).
- Directories are created and their metadata set depth by depth over threads
  (restorer/levels.py): a tree with hundreds of directories at one depth restores
  whole, with every directory's mode and time, and something that is not a directory
  in the way of one of them refuses that directory and what is under it only.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import CLI, PASSWORD, tree_state
from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.repository.chain import snapshot_state
from cleancut.repository.keys import KdfParams
from cleancut.repository.pack import BlobEntry, pack_name
from cleancut.repository.packread import GAP_MAX, RUN_MAX, PackReader, coalesce
from cleancut.repository.repository import Repository, init_repository
from cleancut.restorer.levels import PARALLEL_MIN
from cleancut.restorer.plan import FileJob, make_plan

SIZES = st.lists(
    st.tuples(st.integers(0, 600 << 10), st.integers(1, 5 << 20)),  # (gap before, length)
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(layout=SIZES, seed=st.randoms(use_true_random=False))
def test_coalesce_puts_every_blob_in_one_bounded_range(layout, seed) -> None:
    entries, offset = [], 0
    for i, (gap, length) in enumerate(layout):
        offset += gap
        entries.append(BlobEntry(0, i.to_bytes(32, "big"), offset, length, length))
        offset += length
    shuffled = list(entries)
    seed.shuffle(shuffled)
    ranges = coalesce("p" * 64, b"s", shuffled)
    seen = [e for r in ranges for e in r.entries]
    assert seen == entries  # each once, in offset order
    for rng in ranges:
        first, last = rng.entries[0], rng.entries[-1]
        assert rng.offset == first.offset
        assert rng.offset + rng.length == last.offset + last.length
        assert rng.length <= RUN_MAX or len(rng.entries) == 1
        for a, b in zip(rng.entries, rng.entries[1:], strict=False):
            assert 0 <= b.offset - (a.offset + a.length) <= GAP_MAX


def _repo(root: Path) -> Repository:
    backend = LocalBackend(root / "repo")
    init_repository(backend, PASSWORD, kdf=KdfParams(memory_kib=8192, iterations=1))
    return Repository.open(backend, PASSWORD, root / "cache")


def test_the_reader_verifies_each_blob_and_names_what_cannot_be_had(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    contents = {f"f{i}": os.urandom(3000 + i) for i in range(6)}
    for name, data in contents.items():
        (src / name).write_bytes(data)
    repo = _repo(tmp_path)
    Archiver(repo, src, BackupOptions(name="r")).run()
    nodes = snapshot_state(repo, repo.find_snapshot("latest"))
    jobs = [FileJob("", rel, node) for rel, node in nodes.items() if node.content]
    plan = make_plan(repo.cache, jobs)
    reader = PackReader(repo, plan.packs)
    by_id = {bytes.fromhex(n.content[0]): contents[rel] for rel, n in nodes.items() if n.content}
    for run in plan.runs:
        for entry, data in reader.read(run.range):
            assert data == by_id[entry.id]

    # One blob's box damaged in its pack: that blob fails, its neighbours still verify.
    run = plan.runs[0]
    victim = run.range.entries[len(run.range.entries) // 2]
    path = tmp_path / "repo" / pack_name(run.pack_id)
    raw = bytearray(path.read_bytes())
    raw[victim.offset + victim.length // 2] ^= 0xFF
    os.chmod(path, 0o600)
    path.write_bytes(bytes(raw))
    results = dict(reader.read(run.range))
    assert isinstance(results.pop(victim), str)
    assert all(data == by_id[entry.id] for entry, data in results.items())

    # The pack gone (a repository opened afresh: the first keeps the pack open): every
    # blob of the range says so, in one line each.
    repo.close()
    path.unlink()
    repo = Repository.open(LocalBackend(tmp_path / "repo"), PASSWORD, tmp_path / "cache")
    lines = [why for _, why in PackReader(repo, plan.packs).read(run.range)]
    assert lines and all(isinstance(w, str) and "the pack is missing" in w for w in lines)
    repo.close()


def test_hundreds_of_directories_at_one_depth_restore_with_their_metadata(
    repo_cli: CLI, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    count = PARALLEL_MIN * 3 + 5  # enough at one depth for the threads to share it
    for i in range(count):
        d = src / f"d{i:04d}" / "inner"
        d.mkdir(parents=True)
        (d / "f").write_bytes(b"x" * (i % 7))  # empty and one-byte files among them
        os.utime(d, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
        os.chmod(d.parent, 0o750 if i % 2 else 0o755)
        os.utime(d.parent, ns=(1_500_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + i))
    repo_cli.ok("backup", str(src))
    target = tmp_path / "out"
    repo_cli.ok("restore", "latest", "--target", str(target))
    assert tree_state(target) == tree_state(src)


def test_a_file_in_the_way_of_one_directory_refuses_only_that_directory(
    repo_cli: CLI, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(PARALLEL_MIN * 2):
        (src / f"d{i:03d}" / "sub").mkdir(parents=True)
        (src / f"d{i:03d}" / "sub" / "f").write_text(str(i))
    repo_cli.ok("backup", str(src))
    target = tmp_path / "out"
    (target / "d007").mkdir(parents=True)
    (target / "d007" / "sub").write_text("mine")  # a file where a directory goes
    res = repo_cli.run("restore", "latest", "--target", str(target), "--json")
    assert res.code == 5, res.err
    assert any("d007/sub" in line for line in res.json()["refused"])
    assert (target / "d007" / "sub").read_text() == "mine"
    for i in range(PARALLEL_MIN * 2):
        if i != 7:
            assert (target / f"d{i:03d}" / "sub" / "f").read_text() == str(i)


def test_owners_are_restored_whether_or_not_the_file_was_created_with_them(
    repo_cli: CLI, tmp_path: Path
) -> None:
    """Restore skips chown for a file created with its recorded owner already; a file of
    another owner still gets its own (tests run as root, as CI does)."""
    assert os.geteuid() == 0, "restoring owners needs root; CI runs as root"
    src = tmp_path / "src"
    src.mkdir()
    owners = {"mine": (0, 0), "theirs": (1234, 5678), "group-only": (0, 4321)}
    for name, (uid, gid) in owners.items():
        (src / name).write_text(name)
        os.chown(src / name, uid, gid)
    repo_cli.ok("backup", str(src))
    target = tmp_path / "out"
    repo_cli.ok("restore", "latest", "--target", str(target))
    for name, (uid, gid) in owners.items():
        st = (target / name).stat()
        assert (st.st_uid, st.st_gid) == (uid, gid), name
