"""Key slots: each passphrase wraps the same master keys.

A slot holds Argon2id parameters and salt, and the master keys sealed
(AES-256-GCM) under the key derived from the passphrase. Adding, changing or
removing a passphrase rewrites one small object and never touches data.

A slot also holds the hash of the repository's config and a check value (an
HMAC under a key derived from the master keys) over its own fields, so that
`check`, which holds the master keys, can tell a damaged slot or config from an
intact one without knowing any other passphrase. Opening tries every slot: a
damaged slot is skipped and remembered, never a reason to stop.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cleancut import jsonparse
from cleancut.backend.appendonly import refuse_if_append_only
from cleancut.backend.base import Backend
from cleancut.errors import CleancutError, IntegrityError, ObjectNotFound, WrongPassphrase

from .crypto import KEY_LEN, NONCE_LEN, SALT_LEN, TAG_LEN, MasterKeys, content_hash

KEYS_PREFIX = "keys/"
CONFIG_NAME = "config"
WRAPPED_LEN = 2 * KEY_LEN + TAG_LEN


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


def _mac_key(keys: MasterKeys) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=None, info=b"cleancut/keyslot-mac")
    return hkdf.derive(keys.encryption)


def slot_mac(keys: MasterKeys, slot_id: str, doc: Mapping[str, object]) -> str:
    """The slot's check value: HMAC-SHA256 over its id and every other field (sorted JSON)."""
    fields = {k: v for k, v in doc.items() if k != "mac"}
    message = slot_id.encode() + b"\n" + json.dumps(fields, sort_keys=True).encode()
    return hmac.new(_mac_key(keys), message, hashlib.sha256).hexdigest()


def make_slot(
    keys: MasterKeys, passphrase: str, repo_id: str, kdf: KdfParams, config_hash: str = ""
) -> tuple[str, bytes]:
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
    if config_hash:
        doc["config"] = config_hash
    doc["mac"] = slot_mac(keys, slot_id, doc)
    return slot_id, _render(doc)


def _render(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


def _parse(slot_id: str, data: bytes) -> tuple[KeySlot, dict[str, str]]:
    """The slot's fields, each checked for type and length; IntegrityError if any is off."""
    try:
        doc = jsonparse.loads(data)
        kdf = KdfParams(doc["memory_kib"], doc["iterations"], doc["lanes"])
        slot = KeySlot(slot_id, doc["created"], doc["host"], doc["user"], kdf)
        lengths = {"salt": SALT_LEN, "nonce": NONCE_LEN, "wrapped": WRAPPED_LEN}
        for name, length in lengths.items():
            if len(base64.b64decode(doc[name], validate=True)) != length:
                raise ValueError(f"{name} has the wrong length")
        if not all(isinstance(v, int) and 0 < v < 1 << 32 for v in vars(kdf).values()):
            raise ValueError("implausible Argon2id parameters")
        kdf.validate()
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"key slot {slot_id} is damaged (unreadable)") from exc
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


def slot_problem(keys: MasterKeys, slot_id: str, data: bytes) -> str | None:
    """Why slot `slot_id` is damaged, judged with the master keys; None if intact.

    A slot written before check values existed (no "mac") is judged by its form only.
    """
    try:
        _slot, doc = _parse(slot_id, data)
    except IntegrityError as exc:
        return str(exc)
    if _render(doc) != data:
        return f"key slot {slot_id} is damaged (its bytes are not as written)"
    mac = doc.get("mac")
    if mac is None:
        return None
    if not hmac.compare_digest(str(mac), slot_mac(keys, slot_id, doc)):
        return f"key slot {slot_id} is damaged (its check value does not match)"
    return None


class KeyRing:
    """The key slots of one repository."""

    def __init__(self, backend: Backend, repo_id: str) -> None:
        self.backend = backend
        self.repo_id = repo_id
        self.damaged: dict[str, str] = {}  # slot id -> why, for the slots open() could not read

    def slot_ids(self) -> list[str]:
        return sorted(info.name[len(KEYS_PREFIX) :] for info in self.backend.list(KEYS_PREFIX))

    def _read(self, slot_id: str) -> bytes | None:
        try:
            return self.backend.get(KEYS_PREFIX + slot_id)
        except ObjectNotFound:
            return None  # removed by `key remove` elsewhere since the listing

    def slots(self) -> list[KeySlot]:
        """The readable slots; the others are named in `damaged`."""
        out = []
        for slot_id in self.slot_ids():
            data = self._read(slot_id)
            if data is None:
                continue
            try:
                out.append(_parse(slot_id, data)[0])
            except IntegrityError as exc:
                self.damaged[slot_id] = str(exc)
        return out

    def kdf_of(self, slot_id: str) -> KdfParams:
        return _parse(slot_id, self.backend.get(KEYS_PREFIX + slot_id))[0].kdf

    def open(self, passphrase: str) -> tuple[MasterKeys, str]:
        """Try every slot; returns the master keys and the slot that opened them.

        A damaged slot is skipped (and named in `damaged`): any intact slot still opens."""
        ids = self.slot_ids()
        if not ids:
            raise CleancutError("the repository has no key slots; it cannot be opened")
        for slot_id in ids:
            data = self._read(slot_id)
            if data is None:
                continue
            try:
                keys = unwrap(slot_id, data, passphrase, self.repo_id)
            except IntegrityError as exc:
                self.damaged[slot_id] = str(exc)
                continue
            if keys is not None:
                return keys, slot_id
        self._refuse_damaged_config()
        if self.damaged:
            raise WrongPassphrase(
                "wrong passphrase: no intact key slot of this repository opens with it; "
                f"damaged key slot(s): {', '.join(sorted(self.damaged))}"
            )
        raise WrongPassphrase("wrong passphrase: no key slot of this repository opens with it")

    def _refuse_damaged_config(self) -> None:
        """A changed config id makes every slot fail: say so rather than blame the passphrase."""
        try:
            actual = content_hash(self.backend.get(CONFIG_NAME))
        except ObjectNotFound:
            return
        held = set()
        for slot_id in self.slot_ids():
            data = self._read(slot_id)
            try:
                doc = jsonparse.loads(data or b"")
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("config"), str):
                held.add(doc["config"])
        if held and actual not in held:
            raise IntegrityError(
                "the repository config is damaged: it does not match the hash its key slots hold"
            )

    def add(
        self,
        keys: MasterKeys,
        passphrase: str,
        kdf: KdfParams | None = None,
        config: bytes | None = None,
    ) -> str:
        """Write a new slot; `config`: the config's bytes when it is not written yet (init)."""
        if config is None:
            config = self.backend.get(CONFIG_NAME)
        slot_id, data = make_slot(
            keys, passphrase, self.repo_id, kdf or KdfParams(), content_hash(config)
        )
        self.backend.put(KEYS_PREFIX + slot_id, data)
        return slot_id

    def problems(self, keys: MasterKeys) -> tuple[dict[str, str], str | None]:
        """Every damaged slot (id -> why), judged with the master keys, and why the config
        is damaged (None: intact, or no intact slot holds its hash)."""
        slots: dict[str, str] = {}
        held: set[str] = set()
        for slot_id in self.slot_ids():
            data = self._read(slot_id)
            if data is None:
                continue
            problem = slot_problem(keys, slot_id, data)
            if problem:
                slots[slot_id] = problem
            else:
                config_hash = jsonparse.loads(data).get("config")
                if isinstance(config_hash, str):
                    held.add(config_hash)
        try:
            actual = content_hash(self.backend.get(CONFIG_NAME))
        except ObjectNotFound:
            return slots, "the repository config is missing"
        if held and actual not in held:
            return slots, (
                "the repository config is damaged: it does not match the hash its key slots hold"
            )
        return slots, None

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
