"""Shell completion: `cleancut completion SHELL` prints a script that the real shell loads
and that completes commands, options and choices by asking `cleancut` itself.

bash and fish are driven for real (bash with COMP_WORDS/COMP_CWORD set, as readline sets
them on TAB; fish through `complete -C`, which is what its TAB calls); zsh is parsed by
`zsh -n` and registered through compinit. zsh and fish come from scripts/test-tools.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEANCUT_", "_CLEANCUT"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def _script(shell: str) -> str:
    proc = subprocess.run(
        [str(BIN / "cleancut"), "completion", shell], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _run(argv: list[str], tmp_path: Path) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _bash_complete(script: Path, words: list[str], tmp_path: Path) -> list[str]:
    """COMPREPLY after the completion function runs on `words` (the last one is the one
    being completed), in a real bash that sourced the script."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        "_cleancut_completion cleancut\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    return _run(["bash", "--norc", "--noprofile", "-c", program], tmp_path).split()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bash") / "cleancut.bash"
    path.write_text(_script("bash"))
    return path


def test_bash_completes_a_command(bash_script: Path, tmp_path: Path) -> None:
    assert _bash_complete(bash_script, ["cleancut", "ba"], tmp_path) == ["backup"]


def test_bash_completes_an_option_and_its_choices(bash_script: Path, tmp_path: Path) -> None:
    assert _bash_complete(bash_script, ["cleancut", "restore-test", "--pi"], tmp_path) == [
        "--pick"
    ]
    choices = _bash_complete(bash_script, ["cleancut", "restore-test", "--pick", ""], tmp_path)
    assert sorted(choices) == ["latest", "oldest-untested", "random"]


def test_bash_registers_the_function_for_cleancut(bash_script: Path, tmp_path: Path) -> None:
    out = _run(["bash", "--norc", "-c", f"source {bash_script}; complete -p cleancut"], tmp_path)
    assert "-F _cleancut_completion" in out


def test_the_script_is_clicks_own(bash_script: Path) -> None:
    # The documented fallback, `_CLEANCUT_COMPLETE=bash_source cleancut`, prints the same.
    env = _env() | {"_CLEANCUT_COMPLETE": "bash_source"}
    proc = subprocess.run([str(BIN / "cleancut")], capture_output=True, text=True, env=env)
    assert proc.stdout == bash_script.read_text()


def test_fish_completes_a_command_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "cleancut.fish"
    script.write_text(_script("fish"))
    _run(["fish", "--no-execute", str(script)], tmp_path)
    out = _run(
        ["fish", "--no-config", "-c", f"source {script}; complete -C 'cleancut ba'; "
         "echo ===; complete -C 'cleancut restore-test --pick '"],
        tmp_path,
    )
    commands, choices = out.split("===\n")
    assert [line.split("\t")[0] for line in commands.splitlines()] == ["backup"]
    assert sorted(choices.split()) == ["latest", "oldest-untested", "random"]


def test_zsh_parses_the_script_and_compinit_registers_it(tmp_path: Path) -> None:
    script = tmp_path / "_cleancut"
    script.write_text(_script("zsh"))
    _run(["zsh", "-n", str(script)], tmp_path)
    program = (
        f"autoload -Uz compinit && compinit -u -D; source {script}; "
        "print -r -- $_comps[cleancut]"
    )
    assert _run(["zsh", "-f", "-c", program], tmp_path).strip() == "_cleancut_completion"


def test_an_unknown_shell_is_a_usage_error() -> None:
    proc = subprocess.run(
        [str(BIN / "cleancut"), "completion", "tcsh"], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in proc.stderr
    assert "Traceback" not in proc.stderr
