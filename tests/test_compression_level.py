"""The compression level: new repositories get level 2, existing ones keep theirs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CLI

from cleancut.repository.config import RepoConfig


def test_init_writes_level_2_and_a_config_without_a_level_reads_as_level_1(cli: CLI):
    cli.init()
    raw = json.loads((cli.repo / "config").read_bytes())
    assert raw["compression_level"] == 2
    del raw["compression_level"]  # a config written before the field existed
    assert RepoConfig.from_bytes(json.dumps(raw).encode()).compression_level == 1


def test_a_level_1_repository_keeps_level_1_and_restores(cli: CLI, workspace: Path, tmp_path: Path):
    cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1", "--compression-level", "1")
    cli.ok("backup", str(workspace))
    raw = json.loads((cli.repo / "config").read_bytes())
    assert raw["compression_level"] == 1
    target = tmp_path / "restored"
    cli.ok("restore", "latest", "--target", str(target))
    assert cli.ok("check", "--read-data", "--json").json()["ok"]
