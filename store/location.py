"""Turn a repository location (a path; later, URLs) into a backend."""

from __future__ import annotations

from .backend import Backend
from .errors import UsageError
from .local import LocalBackend


def backend_for(location: str) -> Backend:
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(f"repository scheme {scheme}:// is not supported by this cleancut")
    return LocalBackend(location)
