"""Keys and authenticated encryption.

Two random master keys: one encrypts (AES-256-GCM), one keys BLAKE3 for blob
IDs so equal content deduplicates but the storage provider cannot test
whether a known file is stored. Every pack and every encrypted object derives
its own subkey with HKDF-SHA256 from the encryption key and a random salt, so
the random 96-bit nonces under any one key stay far below their collision
bound.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cleancut.errors import IntegrityError

KEY_LEN = 32
SALT_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = NONCE_LEN + TAG_LEN


@dataclass(frozen=True)
class MasterKeys:
    encryption: bytes
    id_key: bytes

    @classmethod
    def generate(cls) -> MasterKeys:
        return cls(os.urandom(KEY_LEN), os.urandom(KEY_LEN))

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3 of the plaintext: the blob's identity."""
        return blake3.blake3(data, key=self.id_key).digest()

    def subkey(self, salt: bytes, purpose: bytes) -> Sealer:
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=b"cleancut/" + purpose
        )
        return Sealer(hkdf.derive(self.encryption))


class Sealer:
    """AES-256-GCM under one derived key; each sealed box is nonce || ciphertext || tag."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, box: bytes | memoryview, aad: bytes, what: str) -> bytes:
        if len(box) < OVERHEAD:
            raise IntegrityError(f"{what} is truncated")
        try:
            view = memoryview(box)  # no copy of the ciphertext (a blob can be MiBs)
            return self._aead.decrypt(view[:NONCE_LEN], view[NONCE_LEN:], aad)
        except InvalidTag as exc:
            raise IntegrityError(f"{what} failed authentication (damaged or tampered)") from exc


def content_hash(data: bytes | memoryview) -> str:
    """Name of a stored object: unkeyed BLAKE3 of its bytes, so damage is visible from the name."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
