"""Damage found is remembered: later backups store fresh copies, and repair heals old snapshots."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from conftest import CLI, tree_state


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "precious.bin").write_bytes(random.Random(1).randbytes(600_000))
    (src / "small.txt").write_text("hello\n")
    return src


def _damage_data_pack(repo: Path) -> Path:
    packs = [p for p in (repo / "data").rglob("*") if p.is_file()]
    assert len(packs) == 2, packs  # one data pack, one tree pack
    pack = max(packs, key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[200] ^= 0x01  # inside the first blob: precious.bin's data
    pack.write_bytes(bytes(data))
    return pack


def _restores(cli: CLI, snap: str, target: Path, source: Path) -> None:
    cli.ok("restore", snap, "--target", str(target))
    assert tree_state(target) == tree_state(source)


def test_later_backups_store_fresh_copies_of_a_damaged_blob(repo_cli: CLI, tmp_path: Path):
    src = _source(tmp_path)
    old = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    pack = _damage_data_pack(repo_cli.repo)
    res = repo_cli.run("check", "--read-data")
    assert res.code == 4 and pack.name[:12] in res.err, res.err

    # `repair index` and a cache rebuilt from scratch do not admit the damaged blob again.
    repo_cli.ok("repair", "index")
    shutil.rmtree(repo_cli.cache)

    # The same content, as an incremental, a full, and under another name: each restores.
    inc = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    _restores(repo_cli, inc, tmp_path / "inc", src)
    full = repo_cli.ok("backup", str(src), "--full", "--json").json()["snapshot_id"]
    _restores(repo_cli, full, tmp_path / "full", src)
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    other = repo_cli.ok("backup", str(copy), "--name", "other", "--json").json()["snapshot_id"]
    _restores(repo_cli, other, tmp_path / "other", copy)
    # The fresh copy heals the old snapshot too: restore prefers the intact copy.
    _restores(repo_cli, old, tmp_path / "old", src)

    # The damaged pack is still reported until `repair packs` replaces it.
    res = repo_cli.run("check", "--json")
    assert res.code == 4 and res.json()["damaged_packs"] == [pack.name]
    assert res.json()["damaged_snapshots"] == []
    repo_cli.ok("repair", "packs")
    assert not pack.exists()
    repo_cli.ok("check", "--read-data")


def test_repair_packs_heals_a_snapshot_from_its_source(repo_cli: CLI, tmp_path: Path):
    src = _source(tmp_path)
    snap = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    pack = _damage_data_pack(repo_cli.repo)
    res = repo_cli.run("check", "--read-data", "--json")
    assert res.code == 4 and res.json()["damaged_snapshots"] == [snap]

    # Without the source, the blob is found nowhere: the pack stays, exit 4, nothing lost.
    res = repo_cli.run("repair", "packs")
    assert res.code == 4 and pack.name[:12] in res.err and "Traceback" not in res.err
    assert pack.exists()

    repo_cli.ok("repair", "packs", "--from", str(src))
    assert not pack.exists()
    _restores(repo_cli, snap, tmp_path / "healed", src)
    assert repo_cli.ok("check", "--read-data", "--json").json()["errors"] == []
    assert not list((repo_cli.repo / "damaged").iterdir())


def test_a_deleted_pack_is_healed_from_its_source(repo_cli: CLI, tmp_path: Path):
    src = _source(tmp_path)
    snap = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    packs = [p for p in (repo_cli.repo / "data").rglob("*") if p.is_file()]
    pack = max(packs, key=lambda p: p.stat().st_size)
    pack.unlink()
    res = repo_cli.run("check")
    assert res.code == 4 and pack.name[:12] in res.err
    res = repo_cli.run("restore", snap, "--target", str(tmp_path / "broken"))
    assert res.code == 4
    repo_cli.ok("repair", "packs", "--from", str(src))
    _restores(repo_cli, snap, tmp_path / "healed", src)
    repo_cli.ok("check", "--read-data")


def test_a_lost_blob_no_snapshot_needs_does_not_keep_the_pack(repo_cli: CLI, tmp_path: Path):
    src = _source(tmp_path)
    repo_cli.ok("backup", str(src), "--name", "agent")
    pack = _damage_data_pack(repo_cli.repo)
    # New content in a new chain; the old snapshot is forgotten: nothing needs the lost blob.
    (src / "precious.bin").write_bytes(random.Random(9).randbytes(600_000))
    kept = repo_cli.ok("backup", str(src), "--name", "agent", "--full", "--json").json()
    repo_cli.ok("forget", "--name", "agent", "--keep-last", "1")
    assert repo_cli.run("check", "--read-data").code == 4
    report = repo_cli.ok("repair", "packs", "--json").json()
    assert report["replaced_packs"] == [pack.name] and report["blobs_lost"] == []
    _restores(repo_cli, kept["snapshot_id"], tmp_path / "kept", src)
    repo_cli.ok("check", "--read-data")
