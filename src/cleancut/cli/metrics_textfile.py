"""Any command that opens a repository rewrites the metrics textfile when it is done.

The file is named by CLEANCUT_METRICS_TEXTFILE or the config file's `metrics_textfile`
key (the variable wins). It is written when the command's click context closes, after
the command's own work (successful or not, so a failed backup's attempt is counted),
from a fresh look at the repository with the keys already open. A file that cannot be
written is one warning line on stderr and does not change the command's exit code: the
command's own result is what its exit code reports (`tick --textfile` is the strict
form: exit 1 when the file cannot be written). When the command itself failed with an
error, that error stays the one line: the textfile is still attempted, silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cleancut.errors import CleancutError
from cleancut.redact import redact_userinfo
from cleancut.settings.config_file import ConfigFile

if TYPE_CHECKING:  # the repository (and its cache) only when a command opens one
    from cleancut.repository.repository import Repository

# The variable that names the file; ops/prometheus_textfile.py (prometheus_client and the
# metrics) is imported only when one is named, so a command without it loads neither.
TEXTFILE_ENV = "CLEANCUT_METRICS_TEXTFILE"


def configured_textfile(config: ConfigFile) -> Path | None:
    """The textfile every command writes: the environment's, else the config file's."""
    env = os.environ.get(TEXTFILE_ENV)
    if env:
        return Path(env)
    return config.metrics_textfile


def metrics_textfile_after(repo: Repository, config: ConfigFile) -> None:
    """Arrange for the textfile to be written when the running command finishes."""
    path = configured_textfile(config)
    ctx = click.get_current_context(silent=True)
    if path is None or ctx is None:
        return

    def write() -> None:
        from cleancut.ops.prometheus_textfile import write_textfile_after

        failing = sys.exc_info()[0] is not None  # the command raised: its error is the line
        try:
            write_textfile_after(path, repo, config)
        except (CleancutError, OSError) as exc:
            if not failing:
                message = redact_userinfo(str(exc))
                click.echo(f"cleancut: warning: metrics textfile not written: {message}", err=True)

    ctx.call_on_close(write)
