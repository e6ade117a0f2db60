"""The bandwidth-cap policy, in one place: which caps a run puts on a backend.

An explicit cap (--limit-upload, --limit-download) applies to any backend. Without an
explicit upload cap, the profile's bandwidth cap applies to a remote backend only: a
local disk is not a link shared with the agent. That profile is the repository's,
stacked with the config file's layers (`effective`); a command that settles on another
profile later (backup: --profile, --set, the source's) re-applies the cap with
`settle_upload_cap`.
"""

from __future__ import annotations

from cleancut.backend.base import Backend
from cleancut.backend.throttle import ThrottledBackend, set_upload_cap
from cleancut.errors import NotARepository
from cleancut.repository.config import RepoConfig

from .config_file import ConfigFile
from .effective import effective


def profile_upload_cap(
    config: ConfigFile, backend: Backend, repo_config: RepoConfig | None = None
) -> float | None:
    """The profile's bandwidth cap for the repository at `backend` (Mbit/s; None: none);
    `repo_config` if the caller already read it."""
    if repo_config is not None:
        profile: str | None = repo_config.profile
    else:
        # Imported here: the repository module brings its cache (SQLAlchemy), which
        # `config show` and a capped backend with its config in hand never need.
        from cleancut.repository.repository import read_config

        try:
            profile = read_config(backend).profile
        except NotARepository:
            profile = None  # not a repository yet (init): the shared layers decide
    return effective(config, None, profile, {}).profile.bandwidth_cap_mbit


def capped(
    backend: Backend,
    config: ConfigFile,
    upload: float | None = None,
    download: float | None = None,
    explicit_upload: bool = False,
    repo_config: RepoConfig | None = None,
) -> Backend:
    """`backend` with the run's caps: `upload` if the operator gave one (`explicit_upload`),
    else the profile's on a remote backend; `download` as given."""
    if not explicit_upload and backend.remote:
        upload = profile_upload_cap(config, backend, repo_config)
    if not upload and not download:
        return backend
    return ThrottledBackend(backend, upload, download)


def settle_upload_cap(backend: Backend, explicit_upload: bool, mbit: float | None) -> Backend:
    """`backend` with the upload cap of the profile a command settled on, under the same
    policy: an explicit cap stays, a local backend stays uncapped."""
    if explicit_upload or not backend.remote:
        return backend
    return set_upload_cap(backend, mbit)
