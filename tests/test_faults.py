"""Bad input and faults: each gets one clear line, a distinct exit code, and loses nothing."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, Result, assert_no_traceback, tree_state
from forge import forge_snapshot


def _objects(repo: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()
    }


def _packs(repo: Path) -> set[Path]:
    return set((repo / "data").rglob("*"))


def _data_pack(repo: Path) -> Path:
    packs = [p for p in _packs(repo) if p.is_file()]
    assert len(packs) == 2, packs  # one data pack, one tree pack
    return max(packs, key=lambda p: p.stat().st_size)


def test_wrong_passphrase_is_one_line_exit_1_and_writes_nothing(repo_cli: CLI, workspace: Path):
    repo_cli.ok("backup", str(workspace))
    before = _objects(repo_cli.repo)
    for args in (["snapshots"], ["backup", str(workspace)], ["check"]):
        res = repo_cli.run(*args, env={"CLEANCUT_PASSWORD": "not the passphrase"})
        assert res.code == 1
        assert_no_traceback(res)
        assert "wrong passphrase" in res.err
    assert _objects(repo_cli.repo) == before


def test_no_passphrase_at_all(repo_cli: CLI):
    env = {k: v for k, v in repo_cli.env.items() if k != "CLEANCUT_PASSWORD"}
    proc = subprocess.run(
        repo_cli.command("snapshots"),
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert (
        proc.returncode == 1 and "no passphrase" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_passphrase_from_file_and_command(repo_cli: CLI, tmp_path: Path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("correct horse battery staple\n")
    env = {"CLEANCUT_PASSWORD": "wrong"}
    assert repo_cli.run("snapshots", "--password-file", str(pwfile), env=env).code == 0
    cmd = f"cat {pwfile}"
    assert repo_cli.run("snapshots", "--password-command", cmd, env=env).code == 0


def test_not_a_repository(cli: CLI, tmp_path: Path):
    cli.repo.mkdir()
    res = cli.run("snapshots")
    assert res.code == 10 and "not a cleancut repository" in res.err
    assert_no_traceback(res)
    res = cli.run("snapshots", "--repo", str(tmp_path / "nowhere"))
    assert res.code == 10
    assert_no_traceback(res)


def test_unknown_format_version(repo_cli: CLI):
    config = repo_cli.repo / "config"
    doc = json.loads(config.read_text())
    doc["version"] = 99
    config.write_text(json.dumps(doc))
    res = repo_cli.run("snapshots")
    assert res.code == 11 and "format version 99" in res.err
    assert_no_traceback(res)


def test_init_twice_is_refused(repo_cli: CLI):
    res = repo_cli.run("init")
    assert res.code == 1 and "already exists" in res.err


def _two_sources(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "precious.bin").write_bytes(random.Random(1).randbytes(600_000))
    (b / "other.bin").write_bytes(random.Random(2).randbytes(600_000))
    return a, b


def test_flipped_byte_in_a_pack(repo_cli: CLI, tmp_path: Path):
    a, b = _two_sources(tmp_path)
    snap_a = repo_cli.ok("backup", str(a), "--json").json()["snapshot_id"]
    pack_a = _data_pack(repo_cli.repo)  # the other, small pack holds the trees
    snap_b = repo_cli.ok("backup", str(b), "--json").json()["snapshot_id"]
    data = bytearray(pack_a.read_bytes())
    data[200] ^= 0x01  # inside the first blob: precious.bin's data
    pack_a.write_bytes(bytes(data))

    res = repo_cli.run("check", "--read-data")
    assert res.code == 4
    assert pack_a.name[:12] in res.err
    assert snap_a[:12] in res.err and snap_b[:12] not in res.err
    report = repo_cli.run("check", "--read-data", "--json").json()
    assert report["damaged_packs"] == [pack_a.name]
    assert report["damaged_snapshots"] == [snap_a]

    repo_cli.ok("restore", snap_b, "--target", str(tmp_path / "rb"))
    assert tree_state(tmp_path / "rb") == tree_state(b)

    res = repo_cli.run("restore", snap_a, "--target", str(tmp_path / "ra"))
    assert res.code == 4
    assert "precious.bin" in res.err
    assert not (tmp_path / "ra" / "precious.bin").exists()
    assert [p.name for p in (tmp_path / "ra").iterdir()] == []  # no temp file left either


def test_truncated_pack_is_found_by_structure_check(repo_cli: CLI, tmp_path: Path):
    a, _ = _two_sources(tmp_path)
    repo_cli.ok("backup", str(a))
    pack = _data_pack(repo_cli.repo)
    pack.write_bytes(pack.read_bytes()[:-1000])
    res = repo_cli.run("check")
    assert res.code == 4 and pack.name[:12] in res.err and "truncated" in res.out + res.err


@pytest.mark.parametrize("kind", ["snapshots", "index"])
def test_tampered_record_is_refused(repo_cli: CLI, workspace: Path, tmp_path: Path, kind: str):
    first = repo_cli.ok("backup", str(workspace), "--json").json()["snapshot_id"]
    (victim,) = list((repo_cli.repo / kind).iterdir())
    from cleancut.repository.crypto import content_hash

    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x40
    # A forger would also rename the object to its new hash: then only AES-GCM stands in the way.
    forged = victim.with_name(content_hash(bytes(data)))
    victim.unlink()
    forged.write_bytes(bytes(data))
    shutil.rmtree(repo_cli.cache)

    res = repo_cli.run("check")
    assert res.code == 4
    assert "failed authentication" in res.err
    if kind == "snapshots":
        assert repo_cli.ok("snapshots", "--json").json() == []
    else:
        res = repo_cli.run("restore", first[:12], "--target", str(tmp_path / "t"))
        assert res.code == 4 and "failed authentication" in res.err


def test_swapped_snapshot_record_is_refused(repo_cli: CLI, workspace: Path, tmp_path: Path):
    repo_cli.ok("backup", str(workspace), "--name", "one")
    repo_cli.ok("backup", str(workspace), "--name", "two")
    x, y = sorted((repo_cli.repo / "snapshots").iterdir())
    x_bytes = x.read_bytes()
    x.write_bytes(y.read_bytes())
    y.write_bytes(x_bytes)
    shutil.rmtree(repo_cli.cache)
    res = repo_cli.run("check")
    assert res.code == 4 and "does not match its name" in res.err
    assert repo_cli.ok("snapshots", "--json").json() == []


def test_repair_index_heals_a_damaged_segment(repo_cli: CLI, workspace: Path, tmp_path: Path):
    repo_cli.ok("backup", str(workspace))
    (segment,) = list((repo_cli.repo / "index").iterdir())
    segment.write_bytes(segment.read_bytes()[:-3] + b"xyz")
    assert repo_cli.run("check").code == 4
    out = repo_cli.ok("repair", "index", "--json").json()
    assert out["packs_reindexed"] == 2 and out["damaged_segments_removed"] == 1  # data + trees
    repo_cli.ok("check", "--read-data")
    repo_cli.ok("restore", "latest", "--target", str(tmp_path / "t"))
    assert tree_state(tmp_path / "t") == tree_state(workspace)


def test_restore_refuses_entries_that_escape_the_target(repo_cli: CLI, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sid = forge_snapshot(
        repo_cli.repo,
        repo_cli.cache,
        [
            {
                "name": "..",
                "type": "dir",
                "children": [{"name": "x", "type": "file", "data": b"1"}],
            },
            {"name": "../x", "type": "file", "data": b"evil"},
            {"name": "/etc/passwd", "type": "file", "data": b"evil"},
            {"name": str(outside / "abs"), "type": "file", "data": b"evil"},
            {"name": "esc", "type": "symlink", "target": str(outside)},
            {
                "name": "esc",
                "type": "dir",
                "children": [{"name": "f", "type": "file", "data": b"x"}],
            },
            {"name": "good.txt", "type": "file", "data": b"fine"},
        ],
    )
    target = tmp_path / "target"
    res = repo_cli.run("restore", sid, "--target", str(target))
    assert res.code == 5, res.err
    for bad in ("'..'", "'../x'", "'/etc/passwd'", "'esc'"):
        assert bad in res.err
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "x").exists()
    assert (target / "good.txt").read_bytes() == b"fine"
    assert (
        target / "esc"
    ).is_symlink()  # the first "esc" is a harmless link; nothing went through it


def test_restore_never_follows_a_symlink_already_in_the_target(repo_cli: CLI, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    sid = forge_snapshot(
        repo_cli.repo,
        repo_cli.cache,
        [{"name": "sub", "type": "dir", "children": [{"name": "f", "type": "file", "data": b"x"}]}],
    )
    target = tmp_path / "target"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    res = repo_cli.run("restore", sid, "--target", str(target))
    assert res.code == 5 and "'sub'" in res.err
    assert list(outside.iterdir()) == []


def test_deleted_cache_is_rebuilt(repo_cli: CLI, workspace: Path, tmp_path: Path):
    first = repo_cli.ok("backup", str(workspace), "--json").json()
    shutil.rmtree(repo_cli.cache)
    assert [s["id"] for s in repo_cli.ok("snapshots", "--json").json()] == [first["snapshot_id"]]
    shutil.rmtree(repo_cli.cache)
    repo_cli.ok("restore", "latest", "--target", str(tmp_path / "t"))
    assert tree_state(tmp_path / "t") == tree_state(workspace)
    shutil.rmtree(repo_cli.cache)
    repo_cli.ok("check", "--read-data")
    shutil.rmtree(repo_cli.cache)
    second = repo_cli.ok("backup", str(workspace), "--json").json()
    assert second["bytes_added"] < 1024  # only the delta manifest: data deduplicated
    shutil.rmtree(repo_cli.cache)
    assert repo_cli.ok("repair", "index", "--json").json()["blobs"] > 0
    assert len(repo_cli.ok("stats", "--json").json()) > 0


def _big_source(tmp_path: Path) -> Path:
    src = tmp_path / "big"
    (src / "many").mkdir(parents=True)
    rng = random.Random(5)
    for i in range(6):
        (src / f"blob{i}.bin").write_bytes(rng.randbytes(3 << 20))
    for i in range(300):
        (src / "many" / f"f{i}.json").write_text(
            json.dumps({"i": i, "pad": "x" * rng.randint(1, 5000)})
        )
    return src


def test_kill_9_at_random_moments_leaves_no_partial_snapshot(cli: CLI, tmp_path: Path):
    cli.ok(
        "init",
        "--kdf-memory",
        "8MiB",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1MiB",
        "--chunk-min",
        "64KiB",
        "--chunk-avg",
        "256KiB",
        "--chunk-max",
        "1MiB",
    )
    src = _big_source(tmp_path)
    cli.ok("backup", str(src))
    # Time a run like the killed ones (files just written are re-read), to aim the kills.
    start = time.monotonic()
    cli.ok("backup", str(src))
    full = time.monotonic() - start
    complete = {s["id"] for s in cli.ok("snapshots", "--json").json()}
    rng = random.Random(42)
    killed = 0
    for i in range(20):
        (src / "many" / f"f{i}.json").write_text(json.dumps({"round": i}))
        (src / f"new{i}.bin").write_bytes(rng.randbytes(1 << 20))
        proc = subprocess.Popen(
            cli.command("backup", str(src)),
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, full * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        snaps = cli.ok("snapshots", "--json").json()
        for snap in snaps:
            if snap["id"] not in complete:
                # Visible means complete: every object it references must be there.
                res = cli.run("restore", snap["id"], "--target", str(tmp_path / f"r{i}"))
                assert res.code == 0, res.err
                complete.add(snap["id"])
    assert killed >= 10, f"only {killed} of 20 runs were killed mid-backup"
    final = cli.ok("backup", str(src), "--json").json()
    cli.ok("check", "--read-data")
    cli.ok("restore", final["snapshot_id"], "--target", str(tmp_path / "final"))
    assert tree_state(tmp_path / "final") == tree_state(src)


def test_full_filesystem_during_backup(cli: CLI, tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        cli.repo = mnt / "repo"
        cli.env["CLEANCUT_REPO"] = str(cli.repo)
        cli.init()
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (14 << 20))
        src = tmp_path / "src"
        src.mkdir()
        (src / "data.bin").write_bytes(random.Random(3).randbytes(12 << 20))
        res = cli.run("backup", str(src))
        assert res.code == 1, res.err
        assert "no space left" in res.err
        assert_no_traceback(res)
        assert cli.ok("snapshots", "--json").json() == []
        cli.ok("check", "--read-data")
        filler.unlink()
        cli.ok("backup", str(src))
        cli.ok("check", "--read-data")
        cli.ok("restore", "latest", "--target", str(tmp_path / "out"))
        assert (tmp_path / "out" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_unreadable_file_is_skipped_named_and_exit_3(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    secret = workspace / "secret.json"
    secret.write_text("{}")
    secret.chmod(0)
    # Root reads everything; drop the capabilities that let it, as an unprivileged agent host would.
    cmd = [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
        *repo_cli.command("backup", str(workspace), "--json"),
    ]
    if os.geteuid() != 0:
        cmd = repo_cli.command("backup", str(workspace), "--json")
    proc = subprocess.run(cmd, env=repo_cli.env, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)
    assert any("secret.json" in w and "cannot read" in w for w in summary["warnings"])
    assert "secret.json" in proc.stderr
    names = {e["path"] for e in repo_cli.ok("ls", summary["snapshot_id"], "--json").json()}
    assert "secret.json" not in names and "workspace/SOUL.md" in names


def _backup_while_writing(cli: CLI, src: Path, loop_body: str, path: Path) -> Result:
    """Run a backup while another process keeps writing to `path` (for up to 60 s)."""
    script = (
        "import os,sys,time\n"
        "fd=os.open(sys.argv[1], os.O_WRONLY)\n"
        "end=time.time()+60\n"
        "while time.time()<end:\n"
        f"    {loop_body}\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(path)])
    try:
        time.sleep(0.2)
        return cli.run("backup", str(src), "--json")
    finally:
        writer.kill()
        writer.wait()


def test_file_changing_while_read_is_warned_about(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    busy = src / "busy.db"
    busy.write_bytes(os.urandom(64 << 20))
    rewrite = "os.pwrite(fd, os.urandom(4096), 0); time.sleep(0.001)"
    res = _backup_while_writing(repo_cli, src, rewrite, busy)
    assert res.code == 3, res.err
    assert any("busy.db" in w and "changed while read" in w for w in res.json()["warnings"])
    assert res.json()["snapshot_id"]


def test_growing_append_only_file_is_noted_not_warned(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    log = src / "transcript.jsonl"
    log.write_bytes(b'{"line": 0}\n' * 3_000_000)
    append = "os.lseek(fd, 0, 2); os.write(fd, b'{\"line\": 1}\\n'); time.sleep(0.0005)"
    res = _backup_while_writing(repo_cli, src, append, log)
    assert res.code == 0, res.err
    assert res.json()["warnings"] == []
    assert any("transcript.jsonl" in n and "grew" in n for n in res.json()["notes"])
