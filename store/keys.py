"""Key slots: each passphrase wraps the same master keys.

A slot holds Argon2id parameters and salt, and the master keys sealed
(AES-256-GCM) under the key derived from the passphrase. Adding, changing or
removing a passphrase rewrites one small object and never touches data.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .appendonly import refuse_if_append_only
from .backend import Backend
from .crypto import KEY_LEN, NONCE_LEN, SALT_LEN, MasterKeys
from .errors import CleancutError, IntegrityError, WrongPassphrase

KEYS_PREFIX = "keys/"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. Defaults follow RFC 9106's second recommendation (64 MiB, t=3)."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def validate(self) -> None:
        if self.iterations < 1:
            raise ValueError("Argon2id needs at least 1 iteration")
        if self.memory_kib < 8 * self.lanes:
            raise ValueError(f"Argon2id needs at least {8 * self.lanes} KiB of memory")

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        kdf = Argon2id(
            salt=salt,
            length=KEY_LEN,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        )
        return kdf.derive(passphrase.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class KeySlot:
    id: str
    created: str
    host: str
    user: str
    kdf: KdfParams


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _aad(repo_id: str) -> bytes:
    return b"cleancut/keyslot/" + repo_id.encode()


def make_slot(keys: MasterKeys, passphrase: str, repo_id: str, kdf: KdfParams) -> tuple[str, bytes]:
    salt = os.urandom(SALT_LEN)
    nonce = os.urandom(NONCE_LEN)
    wrapping = kdf.derive(passphrase, salt)
    wrapped = AESGCM(wrapping).encrypt(nonce, keys.encryption + keys.id_key, _aad(repo_id))
    slot_id = os.urandom(16).hex()
    doc = {
        "kdf": "argon2id",
        "memory_kib": kdf.memory_kib,
        "iterations": kdf.iterations,
        "lanes": kdf.lanes,
        "salt": _b64(salt),
        "nonce": _b64(nonce),
        "wrapped": _b64(wrapped),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
    }
    return slot_id, json.dumps(doc, indent=2).encode() + b"\n"


def _parse(slot_id: str, data: bytes) -> tuple[KeySlot, dict[str, str]]:
    try:
        doc = json.loads(data)
        kdf = KdfParams(doc["memory_kib"], doc["iterations"], doc["lanes"])
        slot = KeySlot(slot_id, doc["created"], doc["host"], doc["user"], kdf)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"key slot {slot_id} is damaged") from exc
    return slot, doc


def unwrap(slot_id: str, data: bytes, passphrase: str, repo_id: str) -> MasterKeys | None:
    slot, doc = _parse(slot_id, data)
    salt = base64.b64decode(doc["salt"])
    wrapping = slot.kdf.derive(passphrase, salt)
    try:
        plain = AESGCM(wrapping).decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"]), _aad(repo_id)
        )
    except InvalidTag:
        return None
    return MasterKeys(plain[:KEY_LEN], plain[KEY_LEN:])


class KeyRing:
    """The key slots of one repository."""

    def __init__(self, backend: Backend, repo_id: str) -> None:
        self.backend = backend
        self.repo_id = repo_id

    def slot_ids(self) -> list[str]:
        return sorted(info.name[len(KEYS_PREFIX) :] for info in self.backend.list(KEYS_PREFIX))

    def slots(self) -> list[KeySlot]:
        return [
            _parse(slot_id, self.backend.get(KEYS_PREFIX + slot_id))[0]
            for slot_id in self.slot_ids()
        ]

    def kdf_of(self, slot_id: str) -> KdfParams:
        return _parse(slot_id, self.backend.get(KEYS_PREFIX + slot_id))[0].kdf

    def open(self, passphrase: str) -> tuple[MasterKeys, str]:
        """Try every slot; returns the master keys and the slot that opened them."""
        ids = self.slot_ids()
        if not ids:
            raise CleancutError("the repository has no key slots; it cannot be opened")
        for slot_id in ids:
            keys = unwrap(
                slot_id, self.backend.get(KEYS_PREFIX + slot_id), passphrase, self.repo_id
            )
            if keys is not None:
                return keys, slot_id
        raise WrongPassphrase("wrong passphrase: no key slot of this repository opens with it")

    def add(self, keys: MasterKeys, passphrase: str, kdf: KdfParams | None = None) -> str:
        slot_id, data = make_slot(keys, passphrase, self.repo_id, kdf or KdfParams())
        self.backend.put(KEYS_PREFIX + slot_id, data)
        return slot_id

    def remove(self, slot_id: str) -> str:
        refuse_if_append_only(self.backend, "removing a key slot")
        ids = self.slot_ids()
        matches = [s for s in ids if s.startswith(slot_id)]
        if len(matches) != 1:
            raise CleancutError(f"no single key slot matches {slot_id!r}")
        if len(ids) == 1:
            raise CleancutError(
                "refusing to remove the last key slot: the repository would be lost"
            )
        self.backend.delete(KEYS_PREFIX + matches[0])
        return matches[0]
