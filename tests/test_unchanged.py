"""The unchanged backup path: what it trusts and what it catches (docs/decisions/0011).

A file is carried over unread when its size, mtime_ns, ctime_ns and inode all equal the
parent's record (and the parent's scan did not see it inside the racy window). Setting
the mtime back after a rewrite of the same size fools a size-and-mtime check; the ctime
(which a user cannot set) and the inode (a file renamed over another) catch it. The
parent's record comes from a local state cache whose version is checked: a cache of
another version costs one chain replay, never a wrong comparison.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import CLI, tree_state
from hypothesis import given, settings
from hypothesis import strategies as st

from cleancut.archiver.prefetch import WARM_SAMPLE, MetadataPrefetcher
from cleancut.repository.statecache import MAGIC, _legacy_path, _path, load_state, save_state
from cleancut.repository.tree import DIR, FILE, SYMLINK, Node


def _aged(src: Path) -> float:
    """Date everything an hour back, outside the racy window of any backup."""
    old = time.time() - 3600
    for path in [src, *src.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (old, old))
    return old


def _backup(cli: CLI, src: Path) -> dict:
    out: dict = cli.ok("backup", str(src), "--json").json()
    return out


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "notes").mkdir(parents=True)
    (src / "notes" / "a.md").write_text("alpha alpha\n")
    (src / "notes" / "b.md").write_text("bravo bravo\n")
    (src / "top.json").write_text('{"k": 1}\n')
    return src


def test_a_rewrite_of_the_same_size_with_the_mtime_set_back_is_read(
    repo_cli: CLI, tmp_path: Path
):
    src = _source(tmp_path)
    old = _aged(src)
    _backup(repo_cli, src)
    target = src / "notes" / "a.md"
    before = os.stat(target)
    target.write_text("ALPHA ALPHA\n")  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino
    )
    inc = _backup(repo_cli, src)
    assert inc["files_changed"] == 1 and inc["bytes_read"] == after.st_size
    restored = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(restored))
    assert tree_state(restored) == tree_state(src)
    assert old  # (the tree was dated back before the first backup)


def test_a_file_renamed_over_another_of_the_same_size_and_mtime_is_read(
    repo_cli: CLI, tmp_path: Path
):
    src = _source(tmp_path)
    _aged(src)
    _backup(repo_cli, src)
    target = src / "notes" / "b.md"
    before = os.stat(target)
    swap = src / "notes" / ".b.md.tmp"
    swap.write_text("BRAVO BRAVO\n")
    os.utime(swap, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(swap, target)
    inc = _backup(repo_cli, src)
    assert inc["files_changed"] == 1
    restored = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(restored))
    assert (restored / "notes" / "b.md").read_text() == "BRAVO BRAVO\n"


def test_an_unchanged_backup_reads_nothing_and_restores_the_same_tree(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    _aged(workspace)
    _backup(repo_cli, workspace)
    again = _backup(repo_cli, workspace)
    assert again["kind"] == "incremental"
    assert again["bytes_read"] == 0 and again["files_unchanged"] == again["files"]
    memory = workspace / "workspace" / "MEMORY.md"
    os.chmod(memory, 0o600)  # a new ctime: read again (and deduplicated), never trusted
    third = _backup(repo_cli, workspace)
    assert third["bytes_read"] == memory.stat().st_size and third["files_changed"] == 1
    restored = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(restored))
    assert tree_state(restored) == tree_state(workspace)


def test_a_state_cache_of_another_version_is_replaced_after_one_replay(
    repo_cli: CLI, tmp_path: Path
):
    src = _source(tmp_path)
    _aged(src)
    first = _backup(repo_cli, src)
    (cache_dir,) = {p.parent for p in repo_cli.cache.rglob("state-*.zst")}
    current = _path(cache_dir, first["name"])
    assert current.read_bytes().startswith(MAGIC)
    # What version 1 left: JSON at the old name, and nothing at the new one.
    legacy = _legacy_path(cache_dir, first["name"])
    legacy.write_bytes(b'{"snapshot": "x", "nodes": []}')
    current.unlink()
    inc = _backup(repo_cli, src)
    assert inc["kind"] == "incremental" and inc["bytes_read"] == 0  # replayed, then compared
    assert current.read_bytes().startswith(MAGIC) and not legacy.exists()
    # A copy of this version that does not decode (a torn write) reads as missing too.
    whole = current.read_bytes()
    current.write_bytes(whole[: len(whole) // 2])
    assert load_state(cache_dir, first["name"], inc["snapshot_id"]) is None
    again = _backup(repo_cli, src)
    assert again["bytes_read"] == 0 and again["files_unchanged"] == again["files"]


_names = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
    max_size=12,
)
_ids = st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=4)
_ns = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def _states(draw: st.DrawFn) -> dict[str, Node]:
    state: dict[str, Node] = {}
    for parts in draw(st.lists(st.lists(_names, min_size=1, max_size=3), max_size=20)):
        path = "/".join(parts)
        kind = draw(st.sampled_from([FILE, DIR, SYMLINK]))
        node = Node(
            name=parts[-1], type=kind, mode=draw(st.integers(0, 0o7777)), mtime_ns=draw(_ns),
            uid=draw(st.integers(0, 2**32 - 2)), gid=draw(st.integers(0, 2**32 - 2)),
        )
        if kind == FILE:
            node.size = draw(st.integers(0, 2**63 - 1))
            node.ctime_ns = draw(_ns)
            node.inode = draw(st.integers(0, 2**64 - 1))
            node.content = draw(_ids)
        elif kind == SYMLINK:
            node.target = draw(_names)
        state[path] = node
    return state


@settings(max_examples=60, deadline=None)
@given(state=_states(), snapshot=st.binary(min_size=32, max_size=32).map(bytes.hex))
def test_the_state_cache_round_trips(tmp_path_factory, state, snapshot):
    cache_dir = tmp_path_factory.mktemp("cache")
    save_state(cache_dir, "src", snapshot, state)
    loaded = load_state(cache_dir, "src", snapshot)
    assert loaded is not None
    assert {p: n.to_json() for p, n in loaded.items()} == {
        p: n.to_json() for p, n in state.items()
    }
    assert load_state(cache_dir, "src", "not " + snapshot) is None  # another snapshot's copy
    assert load_state(cache_dir, "other source", snapshot) is None


def _prefetched(src: Path, warm_dir_ns: int) -> int:
    """Directories the prefetcher listed below `src`, given its warm-cache threshold."""
    prefetcher = MetadataPrefetcher(lambda rel: False, threads=2, warm_dir_ns=warm_dir_ns)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        prefetcher.start(fd)
        assert prefetcher.idle.wait(60)
    finally:
        prefetcher.stop()
        os.close(fd)
    return prefetcher.scanned


def test_the_prefetcher_stops_scanning_a_tree_it_finds_warm(tmp_path: Path):
    src = tmp_path / "src"
    for i in range(200):
        (src / f"d{i:03d}" / "sub").mkdir(parents=True)
        (src / f"d{i:03d}" / "sub" / "f").write_text("x")
    # Every listing "fast" (a threshold no listing misses): it stops after the sample,
    # give or take the listings the other thread had started.
    assert WARM_SAMPLE <= _prefetched(src, 10**15) <= WARM_SAMPLE + 2
    # Every listing "slow" (a threshold no listing meets): it lists the whole tree.
    assert _prefetched(src, 0) == 401


def test_a_backup_that_changed_nothing_relabels_the_state_cache(repo_cli: CLI, tmp_path: Path):
    src = _source(tmp_path)
    _aged(src)
    first = _backup(repo_cli, src)
    (cache_dir,) = {p.parent for p in repo_cli.cache.rglob("state-*.zst")}
    copy = _path(cache_dir, first["name"])
    magic, named, body = copy.read_bytes().split(b"\n", 2)
    assert magic + b"\n" == MAGIC and named == first["snapshot_id"].encode()
    second = _backup(repo_cli, src)
    assert second["kind"] == "incremental" and second["files_unchanged"] == second["files"]
    # The same state under the new snapshot's id, not encoded again.
    assert copy.read_bytes() == MAGIC + second["snapshot_id"].encode() + b"\n" + body
    top = src / "top.json"
    before = os.stat(top)
    top.write_text('{"k": 2}\n')  # the same size
    os.utime(top, ns=(before.st_atime_ns, before.st_mtime_ns))  # only the ctime moves
    third = _backup(repo_cli, src)
    assert third["files_changed"] == 1
    state = load_state(cache_dir, first["name"], third["snapshot_id"])
    assert state is not None and state["top.json"].ctime_ns == os.stat(src / "top.json").st_ctime_ns
    fourth = _backup(repo_cli, src)
    assert fourth["bytes_read"] == 0 and fourth["files_unchanged"] == fourth["files"]
    restored = tmp_path / "restored"
    repo_cli.ok("restore", "latest", "--target", str(restored))
    assert tree_state(restored) == tree_state(src)


def test_an_unchanged_backup_keeps_excluded_files_out_and_lists_the_rest(
    repo_cli: CLI, tmp_path: Path
):
    """Unchanged files are finished when their directory is listed: an excluded one must
    stay out there too, and a directory swapped in for a file is walked as one."""
    src = _source(tmp_path)
    (src / "notes" / "secret.key").write_text("k\n")
    (src / "cache").mkdir()
    (src / "cache" / "blob.bin").write_text("b\n")
    _aged(src)
    args = ("--exclude", "*.key", "--exclude", "cache")
    repo_cli.ok("backup", str(src), "--json", *args)
    (src / "top.json").unlink()
    (src / "top.json").mkdir()  # a file replaced by a directory
    (src / "top.json" / "inner.txt").write_text("i\n")
    out = repo_cli.ok("backup", str(src), "--json", *args).json()
    assert (out["files_unchanged"], out["files_new"], out["bytes_read"]) == (2, 1, 2)
    names = {e["path"] for e in repo_cli.ok("ls", "latest", "--json").json()}
    assert names == {"notes", "notes/a.md", "notes/b.md", "top.json", "top.json/inner.txt"}
