"""Where a passphrase comes from: environment, file, command, or a prompt. Never argv."""

from __future__ import annotations

import os
import subprocess
import sys

import click
from cleancut.store.boundedread import SECRET_LIMIT, read_bounded
from cleancut.store.errors import NoPassphrase


def read_passphrase(
    password_file: str | None, password_command: str | None, confirm: bool = False
) -> str:
    if password_file:
        data = read_bounded(password_file, "password file", SECRET_LIMIT)
        return data.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
    if password_command:
        proc = subprocess.run(
            password_command, shell=True, capture_output=True, text=True, errors="surrogateescape"
        )
        if proc.returncode != 0:
            raise NoPassphrase(f"password command failed with exit code {proc.returncode}")
        return proc.stdout.rstrip("\r\n")
    env = os.environ.get("CLEANCUT_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty():
        return click.prompt(
            "repository passphrase", hide_input=True, confirmation_prompt=confirm, err=True
        )
    raise NoPassphrase(
        "no passphrase: set CLEANCUT_PASSWORD, or pass --password-file or --password-command"
    )


def read_new_passphrase(new_password_file: str | None) -> str:
    """A second passphrase (key add / passwd): a file, CLEANCUT_NEW_PASSWORD, or a prompt."""
    if new_password_file:
        return read_passphrase(new_password_file, None)
    env = os.environ.get("CLEANCUT_NEW_PASSWORD")
    if env is not None:
        return env
    if sys.stdin.isatty():
        return click.prompt("new passphrase", hide_input=True, confirmation_prompt=True, err=True)
    raise NoPassphrase("no new passphrase: set CLEANCUT_NEW_PASSWORD or pass --new-password-file")
