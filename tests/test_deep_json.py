"""JSON nested deeper than the parser recurses is bad input, never a traceback.

`json.loads` raises RecursionError, which no `except ValueError` catches, on
`[` repeated 100,000 times. Every reader of JSON cleancut did not write itself in
this process (the repository config, agent replies, the ledger, locks, journal
records, caches, the staging manifest) must treat it like any other bad JSON.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard
from conftest import CLI

from cleancut import jsonparse
from cleancut.errors import NotOurs, UnknownFormat
from cleancut.hot.stage import Stager
from cleancut.journal.frame import _decode_ops
from cleancut.journal.repo.store import _read_catalog_cache
from cleancut.repository.locks import Lock
from cleancut.repository.statecache import _path, load_state
from cleancut.sdk.ledger import Ledger
from cleancut.sdk.wire import WireError, decode

DEEP = b"[" * 100_000


def test_the_helper_makes_deep_nesting_a_value_error():
    with pytest.raises(ValueError, match="nested deeper"):
        jsonparse.loads(DEEP)
    assert jsonparse.loads(b'{"a": [1]}') == {"a": [1]}


def test_a_deeply_nested_repository_config_is_one_line_exit_11(repo_cli: CLI):
    (repo_cli.repo / "config").write_bytes(DEEP)
    res = repo_cli.run("snapshots")
    assert res.code == 11, res.err
    assert res.err.count("\n") == 1 and "Traceback" not in res.err
    assert "config is not readable" in res.err


def test_a_deeply_nested_config_parses_to_unknown_format():
    from cleancut.repository.config import RepoConfig

    with pytest.raises(UnknownFormat):
        RepoConfig.from_bytes(DEEP)


def test_a_deeply_nested_agent_reply_is_a_wire_error():
    with pytest.raises(WireError, match="not a JSON line"):
        decode(DEEP + b"\n")


def test_a_deeply_nested_ledger_line_is_not_ours(tmp_path: Path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(DEEP + b"\n")
    with pytest.raises(NotOurs):
        Ledger(path)


def test_a_deeply_nested_lock_reads_as_unreadable():
    assert Lock.from_bytes("lock-x", DEEP).readable is False


def test_a_deeply_nested_journal_operation_list_is_a_value_error():
    with pytest.raises(ValueError, match="operation list"):
        _decode_ops(DEEP, memoryview(b""))


def test_deeply_nested_caches_read_as_missing(tmp_path: Path):
    catalog = tmp_path / "catalog.json"
    catalog.write_bytes(DEEP)
    assert _read_catalog_cache(catalog) == {}
    tmp_path.joinpath("cache").mkdir()
    _path(tmp_path / "cache", "src").write_bytes(zstandard.ZstdCompressor().compress(DEEP))
    assert load_state(tmp_path / "cache", "src", "snap") is None


def test_a_deeply_nested_staging_manifest_starts_staging_over(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data\n")
    stager = Stager(src, tmp_path / "staging")
    stager.capture()
    (tmp_path / "staging" / "manifest.json").write_bytes(DEEP)
    again = Stager(src, tmp_path / "staging")
    assert again.capture().files_copied == 1
    assert (tmp_path / "staging" / "tree" / "f.txt").read_text() == "data\n"


def test_deeply_nested_slots_trees_deltas_and_records_are_damage_not_tracebacks():
    from cleancut.errors import IntegrityError
    from cleancut.repository.crypto import MasterKeys
    from cleancut.repository.keys import _parse
    from cleancut.repository.objects import open_json, seal_json, seal_object
    from cleancut.repository.state import Delta
    from cleancut.repository.tree import decode_tree

    with pytest.raises(IntegrityError):
        _parse("slot", DEEP)
    with pytest.raises(IntegrityError):
        decode_tree(DEEP, "tree x")
    with pytest.raises(IntegrityError):
        Delta.decode(DEEP, "delta x")
    keys = MasterKeys.generate()
    oid, sealed = seal_json(keys, "record", [0])
    assert open_json(keys, "record", oid, sealed) == [0]
    oid, deep = seal_object(keys, "record", DEEP)
    with pytest.raises(IntegrityError):
        open_json(keys, "record", oid, deep)
