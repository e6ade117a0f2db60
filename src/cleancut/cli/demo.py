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
from typing import Any

from cleancut.testing.sample import make_workspace, mutate_workspace


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
        _hot_demo(base, env)


def _hot_demo(base: Path, env: dict[str, str]) -> None:
    """Hot backups of the simulated agent while it writes flat out, then a restore
    checked against every invariant a consistent agent state satisfies."""
    from cleancut.testing.simulated.checker import check_workspace

    root, sock, oracle = base / "live-agent", base / "agent.sock", base / "agent.oracle"
    print("\n--- hot backup of a running agent ---")
    agent = subprocess.Popen(
        [sys.executable, "-m", "cleancut.testing.simulated", "run", "--root", str(root),
         "--socket", str(sock), "--oracle", str(oracle)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        print(f"simulated agent started: {agent.stdout.readline().strip()} (writing flat out)")
        time.sleep(1.0)
        pauses: list[float] = []
        last: dict[str, Any] = {}
        for _ in range(5):
            last = _hot_backup(root, sock, env)
            pauses.append(float(last["pause_ms"]))
            print(
                f"  {last['kind']:<11} {str(last['snapshot_id'])[:12]}  {last['consistency']}"
                f"  pause {last['pause_ms']:.1f} ms  in flight {len(last['inflight'])}"
            )
            time.sleep(0.3)
        print(f"pauses: min {min(pauses):.1f} ms, max {max(pauses):.1f} ms")
    finally:
        agent.terminate()
        agent.wait(10)
    _run(["snapshots", "--name", "live-agent"], env)
    target = base / "restored-agent"
    _run(["restore", str(last["snapshot_id"]), "--target", str(target)], env)
    keys = {a["key"] for a in last["inflight"]}
    problems = check_workspace(target, oracle, inflight_ok=keys)
    if problems:
        print("invariant checker: VIOLATIONS")
        for line in problems:
            print(f"  {line}")
        raise SystemExit(1)
    print("invariant checker: the restored agent state is consistent (every invariant holds)")


def _hot_backup(root: Path, sock: Path, env: dict[str, str]) -> dict[str, Any]:
    import json

    args = ["backup", str(root), "--name", "live-agent", "--agent", f"unix:{sock}",
            "--quiesce-timeout", "5s", "--horizon", "2s", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "cleancut.cli.main", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"hot backup failed ({proc.returncode}): {proc.stderr.strip()}")
    return dict(json.loads(proc.stdout))


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
