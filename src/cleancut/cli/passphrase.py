"""Where a passphrase comes from: environment, file, command, or a prompt. Never argv."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import click

from cleancut.errors import NoPassphrase
from cleancut.fsio.boundedread import SECRET_LIMIT, read_bounded


def read_passphrase(
    password_file: str | None, password_command: str | None, confirm: bool = False
) -> str:
    if password_file:
        data = read_bounded(password_file, "password file", SECRET_LIMIT)
        return data.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
    if password_command:
        return _run_password_command(password_command)
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


def _run_password_command(command: str) -> str:
    """The command's standard output, at most SECRET_LIMIT bytes (`yes` is refused, not
    read forever). It gets our full environment: it may need a token to fetch the secret."""
    proc = subprocess.Popen(
        command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read(SECRET_LIMIT + 1)
    if len(out) > SECRET_LIMIT:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise NoPassphrase(f"password command printed more than {SECRET_LIMIT >> 10} KiB")
    returncode = proc.wait()
    if returncode != 0:
        raise NoPassphrase(f"password command failed with exit code {returncode}")
    return out.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


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
