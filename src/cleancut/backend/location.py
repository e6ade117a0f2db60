"""Turn a repository location (a path, or an s3:// URL) into a backend.

The S3 client (obstore and the modules around it) is imported only for an s3://
location: a command on a local repository never loads it.
"""

from __future__ import annotations

from cleancut.errors import UsageError

from .base import Backend
from .local import LocalBackend

S3_SCHEME = "s3://"  # s3_settings.SCHEME (tests/test_imports.py keeps them equal)


def backend_for(location: str) -> Backend:
    if location.startswith(S3_SCHEME):
        from .s3 import ObjectStoreBackend

        return ObjectStoreBackend.from_url(location)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(f"repository scheme {scheme}:// is not supported by this cleancut")
    return LocalBackend(location)
