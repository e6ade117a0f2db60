"""Turn a repository location (a path, or an s3:// URL) into a backend."""

from __future__ import annotations

from cleancut.errors import UsageError

from .base import Backend
from .local import LocalBackend
from .s3 import ObjectStoreBackend
from .s3_settings import SCHEME as S3_SCHEME


def backend_for(location: str) -> Backend:
    if location.startswith(S3_SCHEME):
        return ObjectStoreBackend.from_url(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(f"repository scheme {scheme}:// is not supported by this cleancut")
    return LocalBackend(location)
