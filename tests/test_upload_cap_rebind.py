"""A backup settles its upload cap after the repository is open (the profile it runs
under is only known then): the repository takes the capped backend through
`use_backend`, which refuses any other store."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CLI, PASSWORD

from cleancut.backend.local import LocalBackend
from cleancut.backend.location import backend_for
from cleancut.backend.throttle import ThrottledBackend
from cleancut.ops.runner import cap_uploads
from cleancut.repository.repository import Repository


class _RemoteLike(LocalBackend):
    """A store the cap policy treats as remote (a link shared with the agent)."""

    remote = True


def _open(repo_cli: CLI, tmp_path: Path, backend: LocalBackend | None = None) -> Repository:
    return Repository.open(backend or backend_for(str(repo_cli.repo)), PASSWORD, tmp_path / "c")


def test_a_remote_store_takes_the_settled_cap_and_still_reads_and_writes(
    repo_cli: CLI, tmp_path: Path
):
    repo = _open(repo_cli, tmp_path, _RemoteLike(repo_cli.repo))
    try:
        plain = repo.backend
        cap_uploads(repo, explicit_upload=False, mbit=80.0)
        assert isinstance(repo.backend, ThrottledBackend)
        assert repo.backend.inner is plain
        assert repo.backend.upload is not None and repo.backend.upload.rate == 80e6 / 8
        repo.backend.put("records/probe", b"x")  # goes through the cap to the same store
        assert plain.get("records/probe") == b"x"
    finally:
        repo.close()


def test_an_explicit_cap_and_a_local_store_are_left_alone(repo_cli: CLI, tmp_path: Path):
    repo = _open(repo_cli, tmp_path)
    try:
        plain = repo.backend
        cap_uploads(repo, explicit_upload=False, mbit=80.0)  # a local disk: no cap
        assert repo.backend is plain
        remote = _open(repo_cli, tmp_path / "r", _RemoteLike(repo_cli.repo))
        try:
            before = remote.backend
            cap_uploads(remote, explicit_upload=True, mbit=80.0)  # --limit-upload stands
            assert remote.backend is before
        finally:
            remote.close()
    finally:
        repo.close()


def test_another_store_is_refused(repo_cli: CLI, tmp_path: Path):
    repo = _open(repo_cli, tmp_path)
    try:
        with pytest.raises(ValueError, match="is not this repository's store"):
            repo.use_backend(LocalBackend(tmp_path / "elsewhere"))
    finally:
        repo.close()
