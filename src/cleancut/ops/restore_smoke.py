"""A restore test's `smoke` step: the operator's own command, run against the sandbox.

The command runs through the shell in the sandbox, with CLEANCUT_RESTORE_DIR and
CLEANCUT_RESTORE_SNAPSHOT set and none of cleancut's secrets in its environment,
in its own process group, so a timeout kills everything it started, not only the
shell. It passes when it exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from cleancut.childenv import child_env
from cleancut.repository.snapshot import Snapshot

RESTORE_DIR_ENV = "CLEANCUT_RESTORE_DIR"
RESTORE_SNAPSHOT_ENV = "CLEANCUT_RESTORE_SNAPSHOT"


def run_smoke(
    command: str, sandbox: Path, snapshot: Snapshot, timeout: float
) -> tuple[list[str], str]:
    """Run `command` through the shell in the sandbox, with CLEANCUT_RESTORE_DIR set.

    It runs in its own process group, so a timeout kills everything it started,
    not only the shell.
    """
    shown = command if len(command) <= 60 else command[:57] + "..."
    # It checks the restored data: no passphrase, no storage credentials, no tokens.
    env = child_env({RESTORE_DIR_ENV: str(sandbox), RESTORE_SNAPSHOT_ENV: snapshot.id})
    with tempfile.TemporaryFile() as out:  # a file, not a pipe: any amount of output is fine
        proc = subprocess.Popen(
            command,
            shell=True,
            cwd=sandbox,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return [f"timed out after {timeout:g}s"], f"smoke command {shown!r}"
        out.seek(max(0, out.seek(0, os.SEEK_END) - 400))
        tail = out.read().decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        said = f" (output: {tail})" if tail else ""
        return [f"exited {proc.returncode}{said}"], f"smoke command {shown!r}"
    return [], f"smoke command {shown!r} exited 0"
