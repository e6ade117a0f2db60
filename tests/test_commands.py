"""Commands only parse and print (docs/architecture.md, "Commands").

Every command is one module of src/cleancut/cli/commands/ that says what it does; none decides an
exit code by itself (no sys.exit): it returns its engine's outcome and src/cleancut/cli/main.py maps
it. The engine-side choices a command used to make are tested here where they have no
end-to-end test of their own (the copy destination's passphrase order).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cleancut.cli.commands
from cleancut.checker.check import CheckReport
from cleancut.cli.main import exit_code_of
from cleancut.errors import ExitCode
from cleancut.ops.tick import Action, TickOutcome
from cleancut.outcome import Outcome
from cleancut.replication.destination_key import TO_PASSWORD_ENV, destination_passphrase
from cleancut.settings.config_file import Replication

COMMANDS = sorted(
    p for p in Path(cleancut.cli.commands.__file__).parent.glob("*.py") if p.name != "__init__.py"
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_a_command_module_says_what_it_does(path: Path) -> None:
    assert ast.get_docstring(_tree(path)), f"{path.name} has no module docstring"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_a_command_module_is_one_command(path: Path) -> None:
    names = {n.name for n in _tree(path).body if isinstance(n, ast.FunctionDef)}
    assert "command" in names, f"{path.name} defines no `command`: not a command module"


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_no_command_decides_the_exit_code_itself(path: Path) -> None:
    exits = [
        f"{path.name}:{node.lineno}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute) and node.attr == "exit"
        or isinstance(node, ast.Name) and node.id in ("exit", "SystemExit")
    ]
    assert exits == []


def test_main_maps_an_outcome_to_its_exit_code() -> None:
    damaged = CheckReport(errors=["pack 0123: damaged"])
    assert isinstance(damaged, Outcome)
    assert exit_code_of(damaged) == ExitCode.INTEGRITY
    assert exit_code_of(CheckReport()) == ExitCode.OK
    failed = TickOutcome([Action("a", "backup", True, ""), Action("b", "prune", False, "x")])
    assert exit_code_of(failed) == ExitCode.FATAL
    assert exit_code_of(TickOutcome([])) == ExitCode.OK


def test_main_keeps_clicks_own_codes_and_zero_for_nothing() -> None:
    assert exit_code_of(None) == 0
    assert exit_code_of(2) == 2  # click's usage exit, returned outside standalone mode
    assert exit_code_of("not an outcome") == 0


def _reader(file: str | None, command: str | None) -> str:
    return f"file:{file}" if file else f"command:{command}"


def _source() -> str:
    return "source's"


@pytest.mark.parametrize(
    ("given", "replication", "to_given", "env", "expected"),
    [
        (("own", None), Replication("r", password_file="rep"), False, "env", "file:own"),
        ((None, "cmd"), Replication("r", password_file="rep"), False, "env", "command:cmd"),
        ((None, None), Replication("r", password_file="rep"), False, "env", "file:rep"),
        # --to names another destination: [replication]'s password file is not its
        ((None, None), Replication("r", password_file="rep"), True, "env", "env"),
        ((None, None), Replication("r"), False, "env", "env"),
        ((None, None), None, False, None, "source's"),
        ((None, None), Replication("r", password_file="rep"), True, None, "source's"),
    ],
)
def test_the_copy_destinations_passphrase_comes_from_the_first_source_set(
    monkeypatch: pytest.MonkeyPatch,
    given: tuple[str | None, str | None],
    replication: Replication | None,
    to_given: bool,
    env: str | None,
    expected: str,
) -> None:
    if env is None:
        monkeypatch.delenv(TO_PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(TO_PASSWORD_ENV, env)
    got = destination_passphrase(*given, replication, to_given, _reader, _source)
    assert got == expected
