"""A damage campaign: flip, truncate and delete each kind of object in a repository.

A small repository with one chain (a full and two incrementals; an empty file
and a multi-chunk file among the sources) is built once. Each case damages one
object of a fresh copy. Then `check --read-data` must fail naming the object,
and every restore of every snapshot must either reproduce its source exactly or
fail: never exit 0 with wrong or missing data.

Check and restore run in-process (the engine the CLI calls) for speed; the
CLI's exit codes are covered for one case of most kinds. Journal batches get
their own small repository (a shipped journal), checked through the CLI.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, PASSWORD, tree_state

from cleancut.backend.location import backend_for
from cleancut.checker.check import Checker
from cleancut.errors import CleancutError
from cleancut.repository.repository import Repository
from cleancut.restorer.restore import Restorer


@dataclass
class Template:
    repo: Path
    states: dict[str, dict[str, tuple[Any, ...]]]  # snapshot id -> its source's tree state
    chain: list[str]  # snapshot ids, full first


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("campaign")
    cli = CLI(base / "repo", base / "cache")
    cli.ok(
        "init", "--kdf-memory", "8MiB", "--kdf-iterations", "1",
        "--chunk-min", "1KiB", "--chunk-avg", "4KiB", "--chunk-max", "16KiB",
    )  # fmt: skip
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "empty").write_bytes(b"")
    (src / "multi.bin").write_bytes(random.Random(7).randbytes(96_000))  # many chunks
    (src / "sub" / "note.txt").write_text("first\n")
    states: dict[str, dict[str, tuple[Any, ...]]] = {}
    chain = []
    for step in range(3):
        if step == 1:
            (src / "sub" / "note.txt").write_text("second, longer\n")
            (src / "added.bin").write_bytes(random.Random(8).randbytes(20_000))
        if step == 2:
            with open(src / "multi.bin", "r+b") as f:
                f.seek(50_000)
                f.write(b"changed in the middle")
        sid = cli.ok("backup", str(src), "--name", "agent", "--json").json()["snapshot_id"]
        chain.append(sid)
        states[sid] = tree_state(src)
    return Template(cli.repo, states, chain)


def _objects(repo: Path) -> dict[str, list[Path]]:
    """The repository's objects by kind."""
    files = sorted(p for p in repo.rglob("*") if p.is_file())
    kinds: dict[str, list[Path]] = {}
    for p in files:
        rel = p.relative_to(repo).parts
        kind = rel[0] if len(rel) > 1 else p.name
        kinds.setdefault(kind, []).append(p)
    return kinds


def _targets(repo: Path, chain: list[str]) -> list[tuple[str, str]]:
    """(case name, object path relative to the repository) for every kind of object."""
    kinds = _objects(repo)
    out = [("config", "config")]
    out += [(f"key-{i}", str(p.relative_to(repo))) for i, p in enumerate(kinds["keys"])]
    out += [(f"snapshot-{i}", f"snapshots/{sid}") for i, sid in enumerate(chain)]
    out += [(f"index-{i}", str(p.relative_to(repo))) for i, p in enumerate(kinds["index"])]
    packs = sorted(kinds["data"], key=lambda p: p.stat().st_size)
    out += [("pack-tree", str(packs[0].relative_to(repo)))]  # the smallest holds trees
    out += [("pack-data", str(packs[-1].relative_to(repo)))]
    out += [("record-0", str(kinds["records"][0].relative_to(repo)))]
    return out


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        at = len(data) // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


def _name_of(rel: str, how: str) -> str:
    """How check names the object: its id (a prefix of at least 12 characters).

    What is deleted cannot always be named: the only key slot (nothing says what its id
    was: "no key slots"), an index segment (its blobs are "in no index segment")."""
    name = rel.rsplit("/", 1)[-1]
    if how == "delete" and rel.startswith("keys/"):
        return "no key slots"
    if how == "delete" and rel.startswith("index/"):
        return "in no index segment"
    return name if name == "config" else name[:12]


def _open(repo: Path, cache: Path) -> Repository:
    return Repository.open(backend_for(str(repo)), PASSWORD, cache)


def _check(repo: Path, cache: Path) -> list[str]:
    """check --read-data, in-process: its errors (an error opening counts as one)."""
    try:
        opened = _open(repo, cache)
    except CleancutError as exc:
        return [str(exc)]
    try:
        return Checker(opened).run(100.0).errors
    finally:
        opened.close()


def _restore_is_honest(repo: Path, cache: Path, sid: str, target: Path, want: dict) -> bool:
    """Restore one snapshot in-process; True if it failed or reproduced its source."""
    try:
        opened = _open(repo, cache)
    except CleancutError:
        return True
    try:
        result = Restorer(opened, opened.load_snapshot(sid), target).run()
    except CleancutError:
        return True
    finally:
        opened.close()
    if result.damaged or result.errors or result.refused:
        return True
    return tree_state(target) == want


CASES = [
    (kind, how)
    for kind in [
        "config",
        "key-0",
        "snapshot-0",
        "snapshot-1",
        "snapshot-2",
        "index-0",
        "pack-tree",
        "pack-data",
        "record-0",
    ]  # fmt: skip
    for how in ["flip", "truncate", "delete"]
]


@pytest.mark.parametrize(("kind", "how"), CASES)
def test_damage_is_reported_and_never_restored_as_good(
    template: Template, tmp_path: Path, kind: str, how: str
):
    repo = tmp_path / "repo"
    shutil.copytree(template.repo, repo)
    targets = dict(_targets(repo, template.chain))
    if kind not in targets:
        pytest.fail(f"the template has no {kind}")
    rel = targets[kind]
    _damage(repo / rel, how)

    errors = _check(repo, tmp_path / "cache")
    if kind.startswith("record") and how == "delete":
        # Not detectable: nothing lists the records, and none is needed to restore.
        assert errors == []
    else:
        assert errors, f"check found nothing wrong after {how} of {rel}"
        named = _name_of(rel, how)
        assert any(named in e for e in errors), (named, errors)

    for i, sid in enumerate(template.chain):
        target = tmp_path / f"restore-{i}"
        assert _restore_is_honest(repo, tmp_path / "cache", sid, target, template.states[sid]), (
            f"restore of {sid[:12]} exited 0 with wrong data after {how} of {rel}"
        )


@pytest.mark.parametrize("kind", ["config", "key-0", "snapshot-2", "pack-data", "record-0"])
def test_exit_codes_through_the_cli(template: Template, tmp_path: Path, kind: str):
    cli = CLI(tmp_path / "repo", tmp_path / "cache")
    shutil.copytree(template.repo, cli.repo)
    rel = dict(_targets(cli.repo, template.chain))[kind]
    _damage(cli.repo / rel, "flip")
    res = cli.run("check", "--read-data")
    assert res.code not in (0, 2, 3) and "Traceback" not in res.err, res.err
    assert _name_of(rel, "flip") in res.err + res.out
    for i, sid in enumerate(template.chain):
        target = tmp_path / f"r{i}"
        res = cli.run("restore", sid, "--target", str(target))
        assert "Traceback" not in res.err
        if res.code == 0:
            assert tree_state(target) == template.states[sid], f"{sid[:12]} restored wrong"
    assert os.path.isdir(cli.repo)


# --- journal batches --------------------------------------------------------------------

from test_journal_store import JOURNAL_PREFIX, _shipped_agent, env  # noqa: E402, F401


@pytest.mark.parametrize("how", ["flip", "delete"])  # a truncation fails as a flip does
def test_damaged_journal_batches_are_reported(env, tmp_path: Path, how: str):  # noqa: F811
    _agent, found = _shipped_agent(env, tmp_path)
    victim = found[1].id  # a batch in the middle of the lineage
    _damage(env.cli.repo / (JOURNAL_PREFIX + victim), how)
    res = env.cli.run("check")
    assert res.code == 4 and "Traceback" not in res.err, res.err
    named = victim[:12] if how != "delete" else "records 31..50"
    assert named in res.err, res.err
