"""Append-only access: a repository opened so that nothing can be deleted or overwritten.

An agent host that is compromised holds the repository's passphrase; if it
could delete, it could destroy its own history. Opened append-only, it can add
snapshots and records and read everything, but never delete or replace an
object: forget and prune run from a trusted host. Objects are named by their
content, so writing a name that exists would only write the same bytes again:
it becomes a conditional create, and an existing object is left untouched.
Bucket permissions (put and get, no delete; object lock) enforce the same on
the storage side; this wrapper makes cleancut fail early and clearly.
"""

from __future__ import annotations

from collections.abc import Iterator

from cleancut.errors import AppendOnly

from .base import Backend, ObjectInfo


class AppendOnlyBackend:
    """A backend that never deletes or overwrites; everything else is the inner one's."""

    append_only = True

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.location = inner.location
        self.remote = inner.remote
        self.write_concurrency = inner.write_concurrency

    def put(self, name: str, data: bytes) -> None:
        self.inner.put_if_absent(name, data)

    def put_if_absent(self, name: str, data: bytes) -> bool:
        return self.inner.put_if_absent(name, data)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(name, offset, length)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def delete(self, name: str) -> None:
        refuse(self, f"deleting {name.split('/')[0]}/ objects")

    def prefetch(self, name: str, length: int = 0) -> None:
        self.inner.prefetch(name, length)


def refuse_if_append_only(backend: Backend, what: str) -> None:
    """Fail before a command that deletes starts, rather than half-way through it."""
    if backend.append_only:
        refuse(backend, what)


def refuse(backend: Backend, what: str) -> None:
    raise AppendOnly(
        f"{backend.location} is open append-only: {what} is refused "
        "(run it from a trusted host without --append-only)"
    )
