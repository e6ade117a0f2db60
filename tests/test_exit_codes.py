"""The exit codes the README and the command reference list are exactly those in use.

Every code is an attribute of src/cleancut/errors.py's ExitCode (plus 130 for an
interrupt, from src/cleancut/cli/main.py); a code listed in the docs but no longer raised,
or raised but not listed, is a lie to the scripts that branch on it.
"""

from __future__ import annotations

import re
from pathlib import Path

from cleancut import errors

ROOT = Path(__file__).resolve().parent.parent
INTERRUPTED = 130


def _codes_in_use() -> set[int]:
    codes = {v for k, v in vars(errors.ExitCode).items() if k.isupper()}
    return codes | {INTERRUPTED}


def _readme_codes() -> set[int]:
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Exit codes:") :].split("\n\n")[0]
    return {int(n) for n in re.findall(r"(?:^|[\s:,])(\d{1,3})\s[a-z]", paragraph)}


def _reference_codes() -> set[int]:
    text = (ROOT / "docs" / "commands.md").read_text()
    section = text[text.index("\n## Exit codes") :].split("\n## ")[1]
    return {int(n) for n in re.findall(r"^\| (\d+) \|", section, re.M)}


def test_every_exit_code_class_uses_a_code_of_exit_code():
    in_use = _codes_in_use()
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.CleancutError):
            assert cls.exit_code in in_use, cls


def test_no_reserved_code_is_left_unused():
    assert not hasattr(errors, "ClockWentBack")
    # 20, once reserved for a stepped-back clock and dropped, now means a failed mount only.
    assert {c for c in vars(errors).values() if getattr(c, "exit_code", None) == 20} == {
        errors.MountFailed
    }


def test_the_readme_lists_exactly_the_codes_in_use():
    assert _readme_codes() == _codes_in_use()


def test_the_command_reference_lists_exactly_the_codes_in_use():
    assert _reference_codes() == _codes_in_use()
