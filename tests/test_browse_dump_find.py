"""`cleancut dump` and `cleancut find`: one file back without a restore, and where it is.

dump's bytes are compared with the source; its tar stream is parsed (tarfile) member by
member against the source's lstat: type, mode, size, content, link target and the
modification time in nanoseconds (pax). A forged tree's hostile names never become tar
members. find is run over a chain, whose snapshots differ.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from conftest import CLI, PASSWORD
from forge import forge_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleancut.backend.local import LocalBackend
from cleancut.browse.catalog import Catalog, escaped
from cleancut.browse.dump import dump_path
from cleancut.repository.repository import Repository
from cleancut.repository.snapshot import Snapshot
from cleancut.testing.sample import mutate_workspace


def _dump(cli: CLI, *args: str) -> tuple[int, bytes, str]:
    proc = subprocess.run(
        cli.command("dump", *args),
        env=cli.env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode()


def _members(stream: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    found = {}
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as tar:
        for info in tar:
            data = b""
            if info.isfile():
                extracted = tar.extractfile(info)
                assert extracted is not None
                data = extracted.read()
            found[info.name] = (info, data)
    return found


def _mtime_ns(info: tarfile.TarInfo) -> int:
    seconds, _, fraction = info.pax_headers["mtime"].partition(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0"))


def _as_in_source(info: tarfile.TarInfo, data: bytes, path: Path) -> None:
    st_ = path.lstat()
    assert _mtime_ns(info) == st_.st_mtime_ns, info.name
    assert info.mode == stat.S_IMODE(st_.st_mode) or stat.S_ISLNK(st_.st_mode), info.name
    if stat.S_ISLNK(st_.st_mode):
        assert info.issym() and info.linkname == os.readlink(path)
    elif stat.S_ISDIR(st_.st_mode):
        assert info.isdir()
    else:
        assert info.isfile() and data == path.read_bytes(), info.name


def test_dump_writes_a_file_or_a_directory_as_a_tar_stream(repo_cli: CLI, workspace: Path) -> None:
    (workspace / "state" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(workspace / "state" / "run.sh", 0o750)
    os.utime(workspace / "state" / "run.sh", ns=(1_600_000_000_123_456_789,) * 2)
    (workspace / "state" / "link").symlink_to("openclaw.json")
    repo_cli.ok("backup", str(workspace), "--name", "agent")

    code, out, err = _dump(repo_cli, "latest", "workspace/SOUL.md")
    assert code == 0, err
    assert out == (workspace / "workspace" / "SOUL.md").read_bytes()

    code, out, err = _dump(repo_cli, "latest", "state")
    assert code == 0, err
    members = _members(out)
    expected = {"state"} | {str(p.relative_to(workspace)) for p in (workspace / "state").rglob("*")}
    assert set(members) == expected
    for name, (info, data) in members.items():
        _as_in_source(info, data, workspace / name)

    code, out, err = _dump(repo_cli, "latest", "/")
    assert code == 0, err
    assert {n for n in _members(out) if "/" not in n} == {p.name for p in workspace.iterdir()}

    missing = repo_cli.run("dump", "latest", "state/no-such-file")
    assert missing.code == 21
    assert "no 'state/no-such-file' in snapshot" in missing.err
    assert len(missing.err.splitlines()) == 1


def test_find_lists_the_snapshots_that_hold_matching_paths(repo_cli: CLI, workspace: Path) -> None:
    queued = sorted(p.name for p in (workspace / "state" / "delivery-queue").glob("*.json"))
    assert queued
    repo_cli.ok("backup", str(workspace), "--name", "agent")
    mutate_workspace(workspace)  # empties the delivery queue
    (workspace / "workspace" / "Later.MD").write_text("written after the first backup\n")
    repo_cli.ok("backup", str(workspace), "--name", "agent")
    first, second = (s["id"] for s in repo_cli.ok("snapshots", "--json").json())

    def found(*args: str) -> dict[str, list[str]]:
        doc = repo_cli.ok("find", *args, "--json").json()
        return {s["snapshot"]: [m["path"] for m in s["matches"]] for s in doc["snapshots"]}

    assert found("state/delivery-queue/*") == {
        first: [f"state/delivery-queue/{name}" for name in queued]
    }
    assert found("*.md", "--ignore-case") == {
        first: _md(workspace, skip="Later.MD"),
        second: _md(workspace),
    }
    assert found("later.md") == {}
    text = repo_cli.ok("find", "Later.MD")
    assert f"snapshot {second[:12]} of agent" in text.out and first[:12] not in text.out
    assert "workspace/Later.MD" in text.out
    nothing = repo_cli.ok("find", "no-such-*")
    assert "no path matches no-such-* in 2 snapshot(s)" in nothing.out


def _md(root: Path, skip: str = "") -> list[str]:
    paths = [p.relative_to(root) for p in root.rglob("*") if p.name.lower().endswith(".md")]
    return sorted((str(p) for p in paths if p.name != skip), key=lambda p: p.split("/"))


def test_a_hostile_name_never_escapes_the_tar_stream(repo_cli: CLI) -> None:
    entries: list[dict[str, Any]] = [
        {"name": "../escape", "type": "file", "data": b"outside"},
        {"name": "..", "type": "file", "data": b"dotdot"},
        {"name": "/etc/passwd", "type": "file", "data": b"absolute"},
        {
            "name": "ok",
            "type": "dir",
            "children": [
                {"name": "x", "type": "file", "data": b"inside"},
                {"name": "..", "type": "dir", "children": []},
            ],
        },
        {"name": "abs", "type": "symlink", "target": "/etc/passwd"},
    ]
    sid = forge_snapshot(repo_cli.repo, repo_cli.cache, entries)
    code, out, err = _dump(repo_cli, sid, "/")
    assert code == 5, err
    members = _members(out)
    assert set(members) == {"abs", "ok", "ok/x"}
    for name in members:
        assert not name.startswith("/") and ".." not in name.split("/")
    assert members["abs"][0].linkname == "/etc/passwd"  # a link's target is its content
    assert members["ok/x"][1] == b"inside"
    assert err.count("refused: ") == 4 and "Traceback" not in err


_NAMES = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda n: n not in (".", ".."))


def _tree(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.fixed_dictionaries(
        {"type": st.just("file"), "data": st.binary(max_size=3000)}
    ) | st.fixed_dictionaries({"type": st.just("symlink"), "target": _NAMES})
    kinds = (
        leaf
        if depth == 0
        else leaf
        | st.fixed_dictionaries(
            {"type": st.just("dir"), "children": st.deferred(lambda: _entries(depth - 1))}
        )
    )
    meta = st.fixed_dictionaries(
        {"mode": st.integers(0, 0o7777), "mtime_ns": st.integers(0, 4_000_000_000 * 10**9)}
    )
    return st.tuples(kinds, meta).map(lambda km: {**km[0], "meta": km[1]})


def _entries(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.dictionaries(_NAMES, _tree(depth), max_size=4).map(
        lambda d: [{"name": name, **entry} for name, entry in d.items()]
    )


def _flatten(entries: list[dict[str, Any]], prefix: str = "") -> dict[str, dict[str, Any]]:
    out = {}
    for entry in entries:
        path = f"{prefix}{entry['name']}"
        out[path] = entry
        out.update(_flatten(entry.get("children", []), path + "/"))
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=_entries(2))
def test_dump_round_trips_small_trees(repo_cli: CLI, entries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as cache:
        sid = forge_snapshot(repo_cli.repo, Path(cache), entries)
        repo = Repository.open(LocalBackend(repo_cli.repo), PASSWORD, Path(cache))
        try:
            out = io.BytesIO()
            outcome = dump_path(repo, repo.load_snapshot(sid), "/", out)
        finally:
            repo.close()
    assert outcome.refused == []
    members = _members(out.getvalue())
    expected = _flatten(entries)
    assert set(members) == set(expected)
    for name, (info, data) in members.items():
        entry = expected[name]
        assert info.mode == entry["meta"]["mode"]
        assert _mtime_ns(info) == entry["meta"]["mtime_ns"]
        if entry["type"] == "file":
            assert info.isfile() and data == entry["data"]
        elif entry["type"] == "dir":
            assert info.isdir()
        else:
            assert info.issym() and info.linkname == entry["target"]


@given(st.lists(st.text(max_size=8), max_size=6, unique=True))
def test_each_source_name_becomes_one_path_component_of_its_own(names: list[str]) -> None:
    snaps = [
        Snapshot(
            time="2026-12-07T00:00:00.000000Z",
            name=n,
            host="h",
            user="u",
            paths=[],
            tree="",
            id=f"{i:064x}",
        )
        for i, n in enumerate(names)
    ]
    catalog = Catalog.of(snaps)
    assert len(catalog.sources) == len(names)  # never two sources in one directory
    for dir_name, source in catalog.sources.items():
        assert "/" not in dir_name and "\0" not in dir_name
        assert dir_name not in ("", ".", "..")
        assert list(source.snapshots) == ["2026-12-07T00:00:00.000000Z"]
        assert source.latest == "2026-12-07T00:00:00.000000Z"
    assert len({escaped(n) for n in names}) == len(names)  # escaping loses nothing


def test_snapshots_recorded_at_one_instant_get_names_of_their_own() -> None:
    snaps = [
        Snapshot(
            time="2026-12-07T00:00:00.000000Z",
            name="agent",
            host="h",
            user="u",
            paths=[],
            tree="",
            id=f"{i:064x}",
            chain="c",
            seq=i,
            kind="full" if i == 0 else "incremental",
        )
        for i in range(3)
    ]
    source = Catalog.of(snaps).sources["agent"]
    assert len(source.snapshots) == 3
    assert source.snapshots[source.latest].seq == 2
