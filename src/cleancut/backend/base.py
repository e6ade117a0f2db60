"""The backend interface: the few operations a repository needs from storage.

Small on purpose (after restic's backend): whole-object writes, conditional
create, whole and ranged reads, listing by prefix, delete. A directory and an
object store both fit it. Objects are immutable once written. Each backend also
declares what the engines decide by (remote, write concurrency, append-only);
wrappers (append-only, throttle) pass those of the backend they wrap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # path relative to the repository root, "/"-separated
    size: int


class Backend(Protocol):
    """Storage for a repository. Names are "/"-separated paths under its root."""

    location: str
    """Where the objects are, as the operator named it (for messages)."""
    remote: bool
    """Whether it crosses a network (False: a directory on this host's filesystems). The
    profile's bandwidth cap applies to a remote backend by default; the prune reserve
    exists only in a local one."""
    write_concurrency: int
    """How many writes a backup keeps in flight (1: one after another)."""
    append_only: bool
    """Whether deleting and overwriting are refused (AppendOnly, exit 16)."""

    def put(self, name: str, data: bytes) -> None:
        """Write a whole object durably, replacing nothing half-written."""

    def put_if_absent(self, name: str, data: bytes) -> bool:
        """Create the object only if it does not exist; False if it did."""

    def get(self, name: str) -> bytes:
        """Read a whole object; ObjectNotFound if missing."""

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Read `length` bytes at `offset`; fewer only if the object is shorter."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with `prefix`."""

    def exists(self, name: str) -> bool:
        """Whether the object exists."""

    def delete(self, name: str) -> None:
        """Remove an object; deleting a missing one is not an error."""

    def prefetch(self, name: str, length: int = 0) -> None:
        """A hint that an object (its first `length` bytes, 0: all) will be read soon.

        Lets a backend start slow reads early; it may do nothing.
        """
