"""Key slots: passphrases come and go without touching data; the last one stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CLI, PASSWORD, assert_no_traceback


def test_add_use_change_and_remove_passphrases(repo_cli: CLI, workspace: Path, tmp_path: Path):
    snap = repo_cli.ok("backup", str(workspace), "--json").json()["snapshot_id"]
    packs_before = sorted(p.name for p in (repo_cli.repo / "data").rglob("*") if p.is_file())

    added = repo_cli.ok("key", "add", "--json", env={"CLEANCUT_NEW_PASSWORD": "second"}).json()
    slots = repo_cli.ok("key", "list", "--json").json()
    assert len(slots) == 2 and sum(s["current"] for s in slots) == 1
    # The new passphrase opens the same repository.
    listed = repo_cli.ok("snapshots", "--json", env={"CLEANCUT_PASSWORD": "second"}).json()
    assert [s["id"] for s in listed] == [snap]

    # Change the second one; the old value stops working, the new one works.
    changed = repo_cli.ok(
        "key",
        "passwd",
        "--json",
        env={"CLEANCUT_PASSWORD": "second", "CLEANCUT_NEW_PASSWORD": "third"},
    ).json()
    assert changed["removed"] == added["added"]
    assert repo_cli.run("snapshots", env={"CLEANCUT_PASSWORD": "second"}).code == 1
    repo_cli.ok("snapshots", env={"CLEANCUT_PASSWORD": "third"})

    # Remove the original slot while opened with the third passphrase.
    original = next(s["id"] for s in slots if s["current"])
    repo_cli.ok("key", "remove", original[:8], env={"CLEANCUT_PASSWORD": "third"})
    assert repo_cli.run("snapshots", env={"CLEANCUT_PASSWORD": PASSWORD}).code == 1
    third = {"CLEANCUT_PASSWORD": "third"}
    repo_cli.ok("restore", snap, "--target", str(tmp_path / "t"), env=third)

    packs_after = sorted(p.name for p in (repo_cli.repo / "data").rglob("*") if p.is_file())
    assert packs_after == packs_before  # no data was re-encrypted


def test_removing_the_last_key_slot_is_refused(repo_cli: CLI):
    (slot,) = repo_cli.ok("key", "list", "--json").json()
    res = repo_cli.run("key", "remove", slot["id"])
    assert res.code == 1 and "last key slot" in res.err
    assert_no_traceback(res)
    assert len(repo_cli.ok("key", "list", "--json").json()) == 1


def test_passphrase_never_comes_from_argv(repo_cli: CLI):
    res = repo_cli.run("snapshots", "--password", PASSWORD)
    assert res.code == 2  # no such option


def _damage_slot(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        # A byte inside the wrapped master keys: the JSON still parses.
        at = data.index(b'"wrapped": "') + 20
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x00garbage\xff" * 7)


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage"])
def test_one_damaged_slot_locks_out_no_other_passphrase(repo_cli: CLI, workspace: Path, how: str):
    (first,) = repo_cli.ok("key", "list", "--json").json()
    added = repo_cli.ok("key", "add", "--json", env={"CLEANCUT_NEW_PASSWORD": "second"}).json()
    snap = repo_cli.ok("backup", str(workspace), "--json").json()["snapshot_id"]
    # Damage the slot that sorts first: the old reader met it before the intact one.
    damaged = min(first["id"], added["added"])
    intact_pw, damaged_pw = ("second", PASSWORD) if damaged == first["id"] else (PASSWORD, "second")
    _damage_slot(repo_cli.repo / "keys" / damaged, how)
    second = {"CLEANCUT_PASSWORD": intact_pw}

    listed = repo_cli.ok("snapshots", "--json", env=second).json()
    assert [s["id"] for s in listed] == [snap]
    res = repo_cli.run("check", env=second)
    assert res.code == 4, res.err
    assert damaged in res.err and "key slot" in res.err
    assert "Traceback" not in res.err
    # The damaged slot's own passphrase no longer opens: exit 1, naming the damaged slot.
    if how != "flip":
        res = repo_cli.run("snapshots", env={"CLEANCUT_PASSWORD": damaged_pw})
        assert res.code == 1 and damaged in res.err
        assert_no_traceback(res)


def test_check_names_a_damaged_config(repo_cli: CLI):
    config = repo_cli.repo / "config"
    # Same JSON, another pack size: nothing parses wrong, only the slots' hash tells.
    config.write_bytes(config.read_bytes().replace(b'"pack_size": ', b'"pack_size": 1'))
    res = repo_cli.run("check")
    assert res.code == 4 and "config is damaged" in res.err, res.err
    assert "Traceback" not in res.err
