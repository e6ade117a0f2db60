"""Import-time hygiene: `cleancut --help` and an unchanged backup load only what they use.

Start-up was about half of an unchanged backup's time (benchmarks/RESULTS.md, issue 14;
docs/decisions/0011-unchanged-backup-path.md). Each test runs the real command line in
a subprocess and records sys.modules as the process exits: which modules were loaded,
never how long anything took.

SQLAlchemy Core is the local cache's database layer (docs/architecture.md), so a backup,
which opens a repository and its cache, imports it; `--help` and commands that open no
repository must not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI

from cleancut.backend import location, s3_settings
from cleancut.cli import commands
from cleancut.cli.commands import COMMANDS, load, summary_of

# Loaded by no plain backup of a local directory (and so by no unchanged one).
NOT_FOR_A_PLAIN_BACKUP = (
    "rich",
    "obstore",
    "websockets",
    "apsw",
    "cleancut.backend.s3",
    "cleancut.hot.orchestrator",
    "cleancut.hot.stage",
    "cleancut.journal.repo.ship",
    "cleancut.restorer",
    "cleancut.prune",
    "cleancut.replication",
    "prometheus_client",
    "mfusepy",
    "cleancut.browse",
    "cleancut.ops.page",
    "langgraph",
)
# `cleancut --help` runs no command: none of the store's libraries, no command module.
NOT_FOR_HELP = (
    *NOT_FOR_A_PLAIN_BACKUP,
    "sqlalchemy",
    "cryptography",
    "zstandard",
    "blake3",
    "fastcdc",
    "sqlite3",
    "cleancut.repository",
    "cleancut.archiver",
    "cleancut.cli.commands.",
)

# Runs cleancut's entry point with the given arguments; at exit, writes the names of
# the loaded modules to the file named by the first argument.
PROBE = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["cleancut", *sys.argv[2:]]
from cleancut.cli.main import main
main()
"""


def _loaded(cli: CLI, tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    names: list[str] = json.loads(out.read_text())
    return names


def _offending(loaded: list[str], banned: tuple[str, ...]) -> list[str]:
    return [
        name
        for name in loaded
        if any(name == b or name.startswith(b if b.endswith(".") else b + ".") for b in banned)
    ]


def test_help_imports_no_command_and_no_store_library(cli: CLI, tmp_path: Path):
    loaded = _loaded(cli, tmp_path, "--help")
    assert "click" in loaded
    assert _offending(loaded, NOT_FOR_HELP) == []


def test_an_unchanged_backup_imports_only_the_plain_backup_path(
    repo_cli: CLI, workspace: Path, tmp_path: Path
):
    repo_cli.ok("backup", str(workspace), "--json")
    loaded = _loaded(repo_cli, tmp_path, "backup", str(workspace), "--json", "--quiet")
    assert "cleancut.archiver.backup" in loaded and "sqlalchemy" in loaded
    assert _offending(loaded, NOT_FOR_A_PLAIN_BACKUP) == []


def test_a_command_that_opens_no_repository_loads_no_cache(cli: CLI, tmp_path: Path):
    loaded = _loaded(cli, tmp_path, "config", "show")
    assert "cleancut.cli.commands.config" in loaded
    assert _offending(loaded, ("sqlalchemy", "cleancut.repository.cache")) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_summary_of_each_command_is_its_own(name: str):
    """The group's help shows the summaries kept in COMMANDS without importing a command:
    each must be what the command's own docstring gives."""
    command = load(name)
    assert command.name == name
    assert summary_of(name).get_short_help_str(1000) == command.get_short_help_str(1000)


def test_every_command_module_is_registered():
    here = Path(commands.__file__).parent
    modules = {p.stem for p in here.glob("*.py") if p.name != "__init__.py"}
    assert modules == {module for module, _, _ in COMMANDS.values()}


def test_the_s3_scheme_is_the_s3_backends_own():
    assert location.S3_SCHEME == s3_settings.SCHEME
