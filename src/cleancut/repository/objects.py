"""Encrypted whole objects: index segments, snapshot records, operational records, journal batches.

Layout: magic "CCO1" | salt (16) | nonce (12) | AES-GCM(ciphertext) | tag (16).
The plaintext is a compressed payload (see compress.py). The associated data
binds the object's kind, so an index segment cannot be passed off as a
snapshot record. The object's name is the BLAKE3 hash of its stored bytes, so
a swapped or altered object is refused before decryption even starts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cleancut import jsonparse
from cleancut.errors import IntegrityError

from .compress import compress, decompress
from .crypto import SALT_LEN, MasterKeys, content_hash

MAGIC = b"CCO1"
JOURNAL_KIND = "journal"
"""A batch of shipped journal records (journal/repo/store.py), under journal/."""


def seal_object(keys: MasterKeys, kind: str, plaintext: bytes) -> tuple[str, bytes]:
    """Encrypt; returns (object id, stored bytes)."""
    salt = os.urandom(SALT_LEN)
    aad = MAGIC + kind.encode() + salt
    box = keys.subkey(salt, b"object/" + kind.encode()).seal(compress(plaintext), aad)
    stored = MAGIC + salt + box
    return content_hash(stored), stored


def open_object(keys: MasterKeys, kind: str, object_id: str, stored: bytes) -> bytes:
    what = f"{kind} {object_id[:12]}"
    if content_hash(stored) != object_id:
        raise IntegrityError(f"{what} does not match its name (damaged or swapped)")
    if not stored.startswith(MAGIC) or len(stored) < len(MAGIC) + SALT_LEN:
        raise IntegrityError(f"{what} is not a cleancut object")
    salt = stored[len(MAGIC) : len(MAGIC) + SALT_LEN]
    aad = MAGIC + kind.encode() + salt
    sealed = memoryview(stored)[len(MAGIC) + SALT_LEN :]
    return decompress(keys.subkey(salt, b"object/" + kind.encode()).open(sealed, aad, what))


def seal_json(keys: MasterKeys, kind: str, value: Any) -> tuple[str, bytes]:
    return seal_object(
        keys, kind, json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    )


def open_json(keys: MasterKeys, kind: str, object_id: str, stored: bytes) -> Any:
    try:
        return jsonparse.loads(open_object(keys, kind, object_id, stored))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{kind} {object_id[:12]} holds no valid JSON") from exc
