"""Which passphrase opens the repository `copy` writes to.

In order: the destination's own --to-password-file or --to-password-command; else
[replication] password_file, when the destination is the config file's (not one given
with --to); else CLEANCUT_TO_PASSWORD; else the source's passphrase (one passphrase for
both, asked for once). Reading a file or running a command is the caller's reader,
which the command line shares with the source's passphrase (bounded reads, prompts).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cleancut.settings.config_file import Replication

TO_PASSWORD_ENV = "CLEANCUT_TO_PASSWORD"

# (password_file, password_command) -> the passphrase
Reader = Callable[[str | None, str | None], str]


def destination_passphrase(
    password_file: str | None,
    password_command: str | None,
    replication: Replication | None,
    to_given: bool,
    read: Reader,
    source_passphrase: Callable[[], str],
) -> str:
    """The destination's passphrase (see the module docstring). `to_given`: the
    destination came from --to, so [replication]'s password_file is not its."""
    if password_file or password_command:
        return read(password_file, password_command)
    if replication and replication.password_file and not to_given:
        return read(replication.password_file, None)
    env = os.environ.get(TO_PASSWORD_ENV)
    return env if env is not None else source_passphrase()
