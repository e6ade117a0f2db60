"""`make demo`: a short, real session with cleancut on a sample agent workspace.

It drives the installed command line exactly as an operator would, in a
temporary directory with a local repository and the SQLite cache.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .sample import make_workspace, mutate_workspace


def _run(args: list[str], env: dict[str, str]) -> None:
    print(f"\n$ cleancut {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "cleancut.cli.main", *args], env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo step failed with exit code {proc.returncode}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cleancut-demo-") as tmp:
        base = Path(tmp)
        workspace = make_workspace(base / "agent")
        env = dict(
            os.environ,
            CLEANCUT_REPO=str(base / "repo"),
            CLEANCUT_PASSWORD="demo passphrase",
            CLEANCUT_CACHE_DIR=str(base / "cache"),
        )
        print(f"sample agent workspace: {workspace}")
        _run(["init"], env)
        _run(["backup", str(workspace), "--name", "agent", "--tag", "demo"], env)
        time.sleep(0.05)
        mutate_workspace(workspace)
        print("\n(the agent took a turn: a transcript, a daily note and sessions.json changed)")
        _run(["backup", str(workspace), "--name", "agent", "--tag", "demo"], env)
        _run(["snapshots"], env)
        _run(["diff", _first_snapshot(env), "latest"], env)
        _run(["restore", "latest", "--target", str(base / "restored")], env)
        same = subprocess.run(["diff", "-r", str(workspace), str(base / "restored")]).returncode
        print("restored tree is identical to the workspace" if same == 0 else "RESTORE DIFFERS")
        _run(["check", "--read-data"], env)
        _run(["stats"], env)
        if same != 0:
            raise SystemExit(1)


def _first_snapshot(env: dict[str, str]) -> str:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "cleancut.cli.main", "snapshots", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(out)[0]["id"])


if __name__ == "__main__":
    main()
