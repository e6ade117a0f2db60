"""The wheel is what a user installs: built from this tree and installed with
`pipx install` (docs/getting-started.md, "Install"), it gives a working `cleancut` command
that backs up, restores and checks without the checkout anywhere in sight.

The wheel is built from a copy of the tree (pyproject.toml, MANIFEST.in, README.md,
src/) so the build leaves nothing in the checkout. The environment pipx makes gets no
system site-packages: a dependency missing from pyproject.toml fails here. pip fetches the
dependencies from the package index once and from its own cache after that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleancut.testing.sample import make_workspace

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "cleancut"
BUILD_INPUTS = ["pyproject.toml", "MANIFEST.in", "README.md"]
PASSWORD = "correct horse battery staple"


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that could point back at the checkout
    or at the test venv (PYTHONPATH, VIRTUAL_ENV, the venv's bin on PATH) or configure
    cleancut."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLEANCUT_", "_CLEANCUT", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env | extra


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for name in BUILD_INPUTS:
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
        cwd=out, env=_clean_env(),
    )
    (built,) = out.glob("cleancut-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
         ) -> Iterator[Path]:
    """`pipx install` of the wheel (pipx from scripts/test-tools), with its home and bin
    directory in a scratch directory: the environment it made, holding only the wheel
    and its declared dependencies. pipx's shared pip lives in pytest's cache, so a
    later run does not build it again."""
    scratch = tmp_path_factory.mktemp("pipx")
    env = _clean_env(
        PIPX_HOME=str(scratch / "home"),
        PIPX_BIN_DIR=str(scratch / "bin"),
        PIPX_SHARED_LIBS=str(request.config.cache.mkdir("pipx-shared-libs")),
    )
    _run(["pipx", "install", str(wheel)], cwd=scratch, env=env)
    venv = scratch / "home" / "venvs" / "cleancut"
    assert (scratch / "bin" / "cleancut").resolve() == (venv / "bin" / "cleancut").resolve()
    yield venv


def _package_files() -> set[str]:
    """Every file the cleancut package holds in the tree, as a path in the wheel."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_carries_every_module_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    in_wheel = {n for n in names if n.startswith("cleancut/")}
    assert in_wheel == _package_files()
    assert "cleancut = cleancut.cli.main:main" in entry_points


# Modules of the `langgraph` extra (pyproject.toml): the wheel carries them, the plain
# install has not their libraries.
EXTRA_MODULES = {"cleancut.sdk.langgraph", "cleancut.sdk.vectorindex"}


def test_the_installed_command_runs_from_the_new_environment(venv: Path, tmp_path: Path) -> None:
    python = str(venv / "bin" / "python")
    where = _run(
        [python, "-c", "import cleancut, sys; print(cleancut.__file__, *sys.path, sep='\\n')"],
        cwd=tmp_path, env=_clean_env(),
    ).splitlines()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve())
    checkout = [p for p in where[1:] if p == str(ROOT) or p.startswith(str(ROOT / "src"))]
    assert checkout == []
    # No declared dependency is missing or in conflict, and every module imports but the
    # ones of the `langgraph` extra, which name that extra when its libraries are absent.
    _run([python, "-m", "pip", "check"], cwd=tmp_path, env=_clean_env())
    optional = sorted(EXTRA_MODULES)
    _run(
        [python, "-c", "import importlib, pkgutil, cleancut\n"
         f"optional = {optional!r}\n"
         "for m in pkgutil.walk_packages(cleancut.__path__, 'cleancut.'):\n"
         "    if m.name not in optional:\n"
         "        importlib.import_module(m.name)\n"
         "for name in optional:\n"
         "    try:\n"
         "        importlib.import_module(name)\n"
         "    except ImportError as exc:\n"
         "        assert \"cleancut[langgraph]\" in str(exc), exc\n"
         "    else:\n"
         "        raise AssertionError(name + ' imported without its extra')\n"],
        cwd=tmp_path, env=_clean_env(),
    )
    assert _run([str(venv / "bin" / "cleancut"), "--version"], tmp_path, _clean_env()) == (
        "cleancut, version 0.1.0\n"
    )


def test_backup_restore_check_with_the_installed_command(venv: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "agent"
    make_workspace(workspace)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = _clean_env(
        PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        CLEANCUT_REPO=str(tmp_path / "repo"),
        CLEANCUT_PASSWORD=PASSWORD,
        CLEANCUT_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert "created repository" in _run(["cleancut", "init"], cwd, env)
    assert "full snapshot" in _run(["cleancut", "backup", str(workspace), "--name", "agent"],
                                   cwd, env)
    _run(["cleancut", "restore", "latest", "--target", str(tmp_path / "restored")], cwd, env)
    _run(["diff", "-r", "--no-dereference", str(workspace), str(tmp_path / "restored")], cwd, env)
    assert _run(["cleancut", "check", "--read-data"], cwd, env).startswith("no errors")
    assert "_cleancut_completion" in _run(["cleancut", "completion", "bash"], cwd, env)
