"""Restore under hostile conditions: long names, planted links and FIFOs, forged trees.

Every name a filesystem accepts must come back under its own name, byte-identical,
whatever its neighbours are called; nothing planted in or beside the target (a
hard link, a symlink, a FIFO at a name restore might use) may be written through
or make restore wait; a forged tree gets one line and an exit code, never a
traceback or a walk that grows without bound.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback, tree_state
from forge import forge_reused_tree, forge_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.archiver.backup import Archiver, BackupOptions
from cleancut.backend.local import LocalBackend
from cleancut.journal.repo.shipped import read_shipped, write_shipped
from cleancut.repository.repository import Repository
from cleancut.restorer.restore import Restorer

OLD_SUFFIX = ".cleancut-restore"  # the temporary names of earlier versions


def _bytes_name(n: int, char: str = "é") -> str:
    """A name of exactly n bytes, mostly of a multibyte character."""
    width = len(char.encode())
    return char * (n // width) + "x" * (n % width)


def _long_names() -> list[str]:
    names = [_bytes_name(n) for n in range(238, 256)]
    names += [_bytes_name(n, "€") for n in range(238, 256, 3)]
    names += ["n" * 250 + f"{i:05d}" for i in range(8)]  # 255 bytes, differ after byte 250
    names += ["m" * 231 + f"-{i:03d}" for i in range(8)]  # differ only past byte 230
    names += ["q" * 254, "z" * 255]
    # A name that is another name's old temporary name ("." + its first 254 bytes).
    names.append(("." + "z" * 255 + OLD_SUFFIX)[:255])
    return names


def test_long_names_restore_byte_identical_with_parallel_writers(
    repo_cli: CLI, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = random.Random(10)
    for i, name in enumerate(_long_names()):
        assert len(name.encode()) <= 255
        (src / name).write_bytes(rng.randbytes(rng.randrange(1, 300_000)))
        (src / "sub" / name).write_bytes(f"{i}".encode() * 1000)
    repo_cli.ok("backup", str(src))
    target = tmp_path / "target"
    res = repo_cli.run("restore", "latest", "--target", str(target))
    assert res.code == 0, res.err
    assert tree_state(target) == tree_state(src)


def _plant(target: Path, outside: Path, names: list[str]) -> dict[Path, bytes]:
    """A hard link, a symlink and a FIFO at the old temporary names of `names`."""
    target.mkdir()
    kept = {}
    for i, name in enumerate(names):
        planted = target / (f".{name}{OLD_SUFFIX}"[:255])
        if len(os.fsencode(planted.name)) > 255:
            continue  # the old code could not create it either ("File name too long")
        victim = outside / f"victim-{i}"
        victim.write_bytes(f"outside {i}".encode())
        kept[victim] = victim.read_bytes()
        kind = i % 3
        if kind == 0:
            os.link(victim, planted)
        elif kind == 1:
            planted.symlink_to(victim)
        else:
            os.mkfifo(planted)
    return kept


def test_planted_links_and_fifos_are_never_written_through(repo_cli: CLI, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    names = ["a", "b", "c", "d.txt", "e", "f", "z" * 255, _bytes_name(255), _bytes_name(254)]
    entries = [{"name": n, "type": "file", "data": f"inside {n}".encode()} for n in names]
    sid = forge_snapshot(repo_cli.repo, repo_cli.cache, entries)
    target = tmp_path / "target"
    kept = _plant(target, outside, names)
    final = outside / "final"  # a hard link at a final name is replaced, not written through
    final.write_bytes(b"outside final")
    os.link(final, target / "e")
    kept[final] = final.read_bytes()
    res = repo_cli.run("restore", sid, "--target", str(target), timeout=60)
    assert res.code == 0, res.err
    for victim, data in kept.items():
        assert victim.read_bytes() == data
    for name in names:
        path = target / name
        assert not path.is_symlink() and path.read_bytes() == f"inside {name}".encode()
        assert path.stat().st_nlink == 1
    assert not [p for p in target.iterdir() if p.name.startswith(".cc-")]


def test_a_symlink_at_the_inflight_files_temporary_name_is_not_followed(
    repo_cli: CLI, tmp_path: Path
):
    inflight = [{"key": "k1", "kind": "email", "state": "started"}]
    sid = forge_snapshot(
        repo_cli.repo,
        repo_cli.cache,
        [{"name": "f", "type": "file", "data": b"x"}],
        capture={"inflight": inflight},
    )
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file")
    target = tmp_path / "t"
    # The old temporary name held the process id: the shell plants it, then becomes restore.
    planted = shlex.quote(str(tmp_path / ".t.inflight.json.")) + "$$.tmp"
    command = " ".join(shlex.quote(a) for a in repo_cli.command("restore", sid, "-t", str(target)))
    script = f"ln -s {shlex.quote(str(victim))} {planted} && exec {command}"
    proc = subprocess.run(
        ["sh", "-c", script], env=repo_cli.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"root's file"
    written = tmp_path / "t.inflight.json"
    assert not written.is_symlink() and '"k1"' in written.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cc-")]


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", 1 << 40), ("mode", -1), ("uid", 1 << 40), ("gid", -5), ("mtime_ns", 1 << 100)],
)
def test_a_forged_out_of_range_field_is_refused_in_one_line(
    repo_cli: CLI, tmp_path: Path, field: str, value: int
):
    sid = forge_snapshot(
        repo_cli.repo,
        repo_cli.cache,
        [
            {"name": "good", "type": "file", "data": b"fine"},
            {"name": "bad", "type": "file", "data": b"x", "meta": {field: value}},
        ],
    )
    target = tmp_path / "target"
    res = repo_cli.run("restore", sid, "--target", str(target))
    assert res.code == 4, res.err
    assert_no_traceback(res)
    assert not target.exists() or list(target.iterdir()) == []


def test_a_tree_reused_at_every_level_is_bounded_by_what_the_snapshot_claims(
    repo_cli: CLI, tmp_path: Path
):
    # 2**61 directories in all: a walk that does not stop would never end.
    sid = forge_reused_tree(repo_cli.repo, repo_cli.cache, 60, summary={"files": 0, "dirs": 7})
    target = tmp_path / "target"
    for args in (("restore", sid, "--target", str(target)), ("ls", sid)):
        res = repo_cli.run(*args, timeout=60)
        assert res.code == 4, res.err
        assert_no_traceback(res)
        assert "directories" in res.err
    assert not target.exists()


def test_a_tree_reused_within_its_claim_restores(repo_cli: CLI, tmp_path: Path):
    sid = forge_reused_tree(repo_cli.repo, repo_cli.cache, 3, summary={"files": 0, "dirs": 15})
    target = tmp_path / "target"
    repo_cli.ok("restore", sid, "--target", str(target))
    assert (target / "a" / "b" / "a").is_dir()
    assert len([d for d, _, _ in os.walk(target)]) == 15


def test_sparse_file_restores_with_holes(repo_cli: CLI, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    size = 48 << 20
    with open(src / "sparse.img", "wb") as f:
        f.write(b"head" * 1024)
        f.seek(size // 2)
        f.write(b"middle" * 1024)
        f.truncate(size)  # ends in a hole
    repo_cli.ok("backup", str(src))
    target = tmp_path / "target"
    repo_cli.ok("restore", "latest", "--target", str(target))
    restored = target / "sparse.img"
    assert restored.read_bytes() == (src / "sparse.img").read_bytes()
    assert restored.stat().st_size == size
    assert restored.stat().st_blocks * 512 < size // 8


NASTY = ["new\nline", "tab\there", "esc\x1b[31mred", "back\\slash", "del\x7f"]
NASTY_BYTES = [b"bad\xffbyte"]


def test_ls_and_diff_escape_control_characters_and_invalid_utf8(
    repo_cli: CLI, tmp_path: Path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "plain").write_text("p")
    first = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    for name in NASTY:
        (src / name).write_text("n")
    for raw in NASTY_BYTES:
        with open(os.path.join(os.fsencode(src), raw), "wb") as f:
            f.write(b"b")
    second = repo_cli.ok("backup", str(src), "--json").json()["snapshot_id"]
    escaped = ["new\\nline", "tab\\there", "esc\\x1b[31mred", "back\\\\slash", "del\\x7f"]
    escaped.append("bad\\xffbyte")
    for res in (repo_cli.ok("ls", second), repo_cli.ok("diff", first, second)):
        out = res.out
        assert "\x1b" not in out and "\t" not in out and "\x7f" not in out
        for shown in escaped:
            lines = [line for line in out.splitlines() if line.endswith(" " + shown)]
            assert len(lines) == 1, (shown, out)
    listed = {e["path"] for e in repo_cli.ok("ls", second, "--json").json()}
    assert set(NASTY) <= listed
    assert os.fsdecode(NASTY_BYTES[0]) in listed or "bad\udcffbyte" in listed


_CHARS = st.sampled_from(["a", "Z", ".", "-", " ", "é", "€", "😀", "\n", "\udcff"])


def _fits(name: str) -> bool:
    return name not in (".", "..") and len(os.fsencode(name)) <= 255


_NAMES = st.lists(
    st.text(_CHARS, min_size=1, max_size=130).filter(_fits), min_size=1, max_size=12, unique=True
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=_NAMES, prefix=st.text(_CHARS, min_size=0, max_size=120))
def test_any_name_that_backs_up_restores_under_its_own_name(
    repo_cli: CLI, tmp_path_factory: pytest.TempPathFactory, names: list[str], prefix: str
):
    base = tmp_path_factory.mktemp("rt")
    src = base / "src"
    src.mkdir()
    names = [n for n in {(prefix + n) for n in names} if _fits(n)] or ["x"]
    for i, name in enumerate(names):
        (src / name).write_bytes(f"{i}:{name!r}".encode() * 50)
    repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, repo_cli.cache)
    try:
        snap = Archiver(repo, src, BackupOptions(name=base.name)).run().snapshot
        result = Restorer(repo, snap, base / "target").run()
    finally:
        repo.close()
    assert (result.refused, result.damaged, result.errors) == ([], [], [])
    assert tree_state(base / "target") == tree_state(src)



def test_the_local_backend_writes_past_whatever_sits_at_a_guessable_temp_name(tmp_path: Path):
    backend = LocalBackend(tmp_path / "repo")
    (tmp_path / "repo" / "data").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    data = b"object bytes"
    # The name earlier versions used: the process id and the data's address.
    guessed = tmp_path / "repo" / "data" / f".obj.{os.getpid()}.{id(data):x}.tmp"
    guessed.symlink_to(victim)
    backend.put("data/obj", data)
    assert backend.put_if_absent("data/obj2", data)
    assert backend.get("data/obj") == data == backend.get("data/obj2")
    assert victim.read_bytes() == b"keep"
    assert sorted(i.name for i in backend.list("data/")) == ["data/obj", "data/obj2"]


_REPLAY = """
import sys
from cleancut.journal.frame import ZERO_HASH, JournalRecord, Put
from cleancut.journal.replay import replay
ops = (Put("a", b"new a"), Put("b", b"new b"), Put("c", b"new c"))
replay([JournalRecord(1, 0, ZERO_HASH, ops)], sys.argv[1])
"""


def test_journal_replay_never_writes_through_its_temporary_names(tmp_path: Path):
    target = tmp_path / "target"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.link(victim, target / ".ccj-tmp-1-0")
    (target / ".ccj-tmp-1-1").symlink_to(victim)
    os.mkfifo(target / ".ccj-tmp-1-2")
    proc = subprocess.run(
        [sys.executable, "-c", _REPLAY, str(target)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"keep"
    assert {p.name: p.read_bytes() for p in target.iterdir()} == {
        "a": b"new a",
        "b": b"new b",
        "c": b"new c",
    }


def test_the_shipped_mark_is_not_written_through_a_planted_symlink(tmp_path: Path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    # The name earlier versions used, guessable from the process id.
    (journal_dir / f".shipped.{os.getpid()}.tmp").symlink_to(victim)
    write_shipped(journal_dir, 42)
    assert read_shipped(journal_dir) == 42
    assert victim.read_bytes() == b"keep"


def test_a_reused_tree_in_a_record_that_claims_nothing_is_still_bounded(
    repo_cli: CLI, tmp_path: Path
):
    sid = forge_reused_tree(repo_cli.repo, repo_cli.cache, 60)
    res = repo_cli.run("restore", sid, "--target", str(tmp_path / "target"), timeout=120)
    assert res.code == 4, res.err
    assert_no_traceback(res)
    assert "262144 directories" in res.err


def test_forged_names_and_link_targets_no_system_call_accepts(repo_cli: CLI, tmp_path: Path):
    good = {"name": "good", "type": "file", "data": b"fine"}
    lone = forge_snapshot(
        repo_cli.repo,
        repo_cli.cache,
        [good, {"name": "bad\ud800", "type": "file", "data": b"x"}],
    )
    res = repo_cli.run("restore", lone, "--target", str(tmp_path / "t1"))
    assert res.code == 5 and "Traceback" not in res.err and "surrogate" in res.err, res.err
    assert sorted(os.listdir(tmp_path / "t1")) == ["good"]
    nul = forge_snapshot(
        repo_cli.repo, repo_cli.cache, [good, {"name": "l", "type": "symlink", "target": "a\0b"}]
    )
    res = repo_cli.run("restore", nul, "--target", str(tmp_path / "t2"))
    assert res.code == 1 and "Traceback" not in res.err and "error: l: cannot create" in res.err
    assert sorted(os.listdir(tmp_path / "t2")) == ["good"]
    too_long = {"name": "l", "type": "symlink", "target": "x" * 5000}
    long = forge_snapshot(repo_cli.repo, repo_cli.cache, [good, too_long])
    res = repo_cli.run("restore", long, "--target", str(tmp_path / "t3"))
    assert res.code == 1 and "Traceback" not in res.err and "error: l: cannot create" in res.err
    assert sorted(os.listdir(tmp_path / "t3")) == ["good"]


def test_snapshot_and_status_tables_show_names_literally(repo_cli: CLI, tmp_path: Path):
    """A source name or tag is shown as it is: rich markup is not applied, a newline is
    escaped, so one snapshot is one row whatever its name says."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    name = "[bold red]agent\nfake row"
    repo_cli.ok("backup", str(src), "--name", name, "--tag", "[link=x]t\x1b[2J")
    out = repo_cli.ok("snapshots").out
    assert "\x1b" not in out
    assert "[bold red]agent\\nfake row" in out and "[link=x]t\\x1b[2J" in out
    status = repo_cli.run("status").out
    assert "[bold red]agent\\nfake row" in status and "\x1b" not in status
