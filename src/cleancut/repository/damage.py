"""Known damage: the blob locations `check` found damaged, kept in the repository.

`check` writes what it finds to `damaged/<object id>` (encrypted objects of
kind "damage"), so every later process on any host knows it: deduplication
treats a blob whose only indexed copies are damaged as absent (the next backup
stores a fresh copy), restore prefers an intact copy, and `repair index` does
not index a damaged pack again. A damage object's plaintext is JSON:

    {"time": ISO 8601 UTC, "packs": {pack id: [damaged blob id (hex), ...]}}

An empty list means the pack is damaged (its bytes do not match its name) but
every blob in it still decrypted and verified. The registry is the union of
every damage object; `repair packs` rewrites it when it removes a healed pack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from cleancut import clock
from cleancut.backend.base import Backend
from cleancut.errors import IntegrityError, ObjectNotFound

from .crypto import MasterKeys
from .objects import open_json, seal_json

DAMAGE_PREFIX = "damaged/"
DAMAGE_KIND = "damage"


@dataclass
class Damage:
    """The merged registry: pack id -> damaged blob ids (empty: the blobs read fine)."""

    packs: dict[str, set[bytes]] = field(default_factory=dict)
    object_ids: list[str] = field(default_factory=list)  # the objects it was read from
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (object id, why)

    def pairs(self) -> set[tuple[str, bytes]]:
        return {(pack, blob) for pack, blobs in self.packs.items() for blob in blobs}

    def add(self, pack_id: str, blobs: Iterable[bytes]) -> None:
        self.packs.setdefault(pack_id, set()).update(blobs)

    def covers(self, other: Damage) -> bool:
        """Whether everything `other` names is named here already."""
        return all(
            pack in self.packs and blobs <= self.packs[pack] for pack, blobs in other.packs.items()
        )


def load_damage(backend: Backend, keys: MasterKeys) -> Damage:
    damage = Damage()
    for info in backend.list(DAMAGE_PREFIX):
        oid = info.name[len(DAMAGE_PREFIX) :]
        if oid.endswith(".tmp"):
            continue
        try:
            doc = open_json(keys, DAMAGE_KIND, oid, backend.get(info.name))
            packs = {str(p): [bytes.fromhex(b) for b in blobs] for p, blobs in doc["packs"].items()}
        except ObjectNotFound:
            continue  # replaced by `repair packs` between the listing and the read
        except (IntegrityError, KeyError, TypeError, ValueError, AttributeError) as exc:
            damage.unreadable.append((oid, str(exc)))
            continue
        damage.object_ids.append(oid)
        for pack, blobs in packs.items():
            damage.add(pack, blobs)
    return damage


def write_damage(backend: Backend, keys: MasterKeys, damage: Damage) -> str:
    doc = {
        "time": clock.iso(clock.now()),
        "packs": {p: sorted(b.hex() for b in blobs) for p, blobs in sorted(damage.packs.items())},
    }
    oid, stored = seal_json(keys, DAMAGE_KIND, doc)
    backend.put(DAMAGE_PREFIX + oid, stored)
    return oid


def remember_damage(backend: Backend, keys: MasterKeys, found: Damage) -> str | None:
    """Add what `check` found to the registry (a new object; nothing is rewritten).

    Returns the new object's id, or None when the registry knew it all already."""
    if not found.packs or load_damage(backend, keys).covers(found):
        return None
    return write_damage(backend, keys, found)


def replace_damage(backend: Backend, keys: MasterKeys, keep: Damage, old: Damage) -> None:
    """Write `keep` as one object (if it names anything), then delete the objects of `old`."""
    if keep.packs:
        write_damage(backend, keys, keep)
    for oid in old.object_ids:
        with contextlib.suppress(ObjectNotFound):
            backend.delete(DAMAGE_PREFIX + oid)
