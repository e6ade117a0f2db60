"""How a repository is reached: the backend for a location, with caps and append-only.

The command line and `copy` both open repositories; the choices that shape
access (bandwidth caps, append-only) are applied here, in one order: the
append-only guard innermost (it decides what may be written), the caps outside
(they meter what is actually transferred).
"""

from __future__ import annotations

from .appendonly import AppendOnlyBackend
from .base import Backend
from .location import backend_for
from .throttle import ThrottledBackend


def open_backend(
    location: str,
    upload_mbit: float | None = None,
    download_mbit: float | None = None,
    append_only: bool = False,
) -> Backend:
    backend: Backend = backend_for(location)
    if append_only:
        backend = AppendOnlyBackend(backend)
    if upload_mbit or download_mbit:
        backend = ThrottledBackend(backend, upload_mbit, download_mbit)
    return backend


def is_remote(backend: Backend) -> bool:
    """Whether the backend crosses a network (the profile's upload cap applies by default)."""
    return backend.remote
