"""Shared fixtures: a real `cleancut` process against a real repository on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cleancut.testing.sample import make_workspace

PASSWORD = "correct horse battery staple"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class CLI:
    """Runs the installed command line as a separate process, as an operator would."""

    def __init__(self, repo: Path, cache: Path) -> None:
        self.repo = repo
        self.cache = cache
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANCUT_")} | {
            "CLEANCUT_REPO": str(repo),
            "CLEANCUT_PASSWORD": PASSWORD,
            "CLEANCUT_CACHE_DIR": str(cache),
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cleancut.cli.main", *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run(
            self.command(*args),
            env=self.env | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        res = self.run(*args, env=env)
        assert res.code == 0, f"cleancut {' '.join(args)} exited {res.code}: {res.err}"
        return res

    def init(self) -> Result:
        # Cheap Argon2id parameters keep the suite fast; the format is the same.
        return self.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1")


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path / "repo", tmp_path / "cache")


@pytest.fixture
def repo_cli(cli: CLI) -> CLI:
    cli.init()
    return cli


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "agent")


def agent_hello(sock: Path, timeout: float = 10) -> dict[str, Any]:
    """An agent's `hello` answer, asked over a connection of our own (as an operator could)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(b'{"id":1,"op":"hello","protocol":1}\n')
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return dict(json.loads(data))


def assert_no_traceback(res: Result) -> None:
    assert "Traceback" not in res.err, res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {res.err!r}"


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything restore must reproduce: type, content, mode, mtime, link target."""
    state: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif path.is_dir():
                state[rel] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                state[rel] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return state
