"""Pack files: many encrypted blobs in one object, then an encrypted header.

Layout (all integers little-endian):

    preamble   "CCPK" | version u8 (1) | salt (16)
    blobs      each: nonce (12) | AES-GCM ciphertext | tag (16)
    header     nonce (12) | AES-GCM(entries) | tag (16)
    trailer    header length u32 | "CCPE"

Each pack derives its key from the master key and its salt (HKDF). A blob's
associated data is its type byte and its ID, so a blob cannot be moved to
another ID undetected. The header lists every blob (type, ID, offset, length,
raw length), enough to rebuild the index from the pack alone. A pack's name is
the BLAKE3 hash of its bytes.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

from cleancut.errors import IntegrityError

from .crypto import OVERHEAD, SALT_LEN, MasterKeys, Sealer

MAGIC = b"CCPK"
END_MAGIC = b"CCPE"
VERSION = 1
PREAMBLE_LEN = len(MAGIC) + 1 + SALT_LEN
TRAILER = struct.Struct("<I4s")
ENTRY = struct.Struct("<B32sQII")  # type, id, offset, length, raw length

DATA = 0
TREE = 1
DELTA = 2  # an incremental snapshot's delta manifest
BLOB_TYPES = {DATA: "data", TREE: "tree", DELTA: "delta"}


@dataclass(frozen=True, slots=True)
class BlobEntry:
    type: int
    id: bytes
    offset: int
    length: int  # stored bytes, nonce and tag included
    raw_length: int  # plaintext bytes


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return bytes([blob_type]) + blob_id


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


def pack_sealer(keys: MasterKeys, salt: bytes) -> Sealer:
    return keys.subkey(salt, b"pack")


class PackBuilder:
    """Collects encrypted blobs for one pack. Not thread-safe: one owner appends."""

    def __init__(self, keys: MasterKeys, salt: bytes | None = None) -> None:
        """`salt`: the one a worker process sealed this pack's blobs under
        (archiver/pool.py); a fresh random one by default."""
        self.salt = salt if salt is not None else os.urandom(SALT_LEN)
        self.sealer = pack_sealer(keys, self.salt)
        self.parts: list[bytes | memoryview] = [MAGIC + bytes([VERSION]) + self.salt]
        self.size = PREAMBLE_LEN
        self.entries: list[BlobEntry] = []

    def seal_blob(self, blob_type: int, blob_id: bytes, payload: bytes) -> bytes:
        """Encrypt a compressed payload; safe to call from worker threads."""
        return self.sealer.seal(payload, blob_aad(blob_type, blob_id))

    def add_sealed(
        self, blob_type: int, blob_id: bytes, box: bytes | memoryview, raw_length: int
    ) -> None:
        self.entries.append(BlobEntry(blob_type, blob_id, self.size, len(box), raw_length))
        self.parts.append(box)
        self.size += len(box)

    def finish(self) -> bytes:
        self.parts.append(self._header_and_trailer())
        data = b"".join(self.parts)
        self.parts = []
        return data

    def _header_and_trailer(self) -> bytes:
        header = b"".join(
            ENTRY.pack(e.type, e.id, e.offset, e.length, e.raw_length) for e in self.entries
        )
        box = self.sealer.seal(header, b"pack-header" + self.salt)
        return box + TRAILER.pack(len(box), END_MAGIC)


class PackBuffer(PackBuilder):
    """A pack whose sealed blobs are read straight into one anonymous mapping (blobs a
    worker process sealed, archiver/pool.py): no allocation or copy per blob, and memory
    is touched only as the pack fills. `capacity` bounds the blobs; the mapping also
    reserves room for the largest header they can need (ENTRY per blob of at least
    OVERHEAD + 2 bytes), which costs address space, not memory."""

    def __init__(self, keys: MasterKeys, salt: bytes, capacity: int) -> None:
        super().__init__(keys, salt)
        self.capacity = PREAMBLE_LEN + capacity
        header = (capacity // (OVERHEAD + 2) + 1) * ENTRY.size + OVERHEAD + TRAILER.size
        self.map = mmap.mmap(-1, self.capacity + header, flags=mmap.MAP_PRIVATE)
        self.map[:PREAMBLE_LEN] = self.parts[0]
        self.parts = []

    def room(self, length: int) -> memoryview:
        """Where the next blob's `length` sealed bytes go (record them with `commit`)."""
        if self.size + length > self.capacity:
            raise IntegrityError("a worker sent more than a pack's worth under one salt")
        return memoryview(self.map)[self.size : self.size + length]

    def commit(self, blob_type: int, blob_id: bytes, length: int, raw_length: int) -> None:
        self.entries.append(BlobEntry(blob_type, blob_id, self.size, length, raw_length))
        self.size += length

    def finish(self) -> bytes:
        """The pack's bytes: the header and trailer are written after the blobs, in place
        (no copy of them); the mapping goes away with the last reference to them."""
        tail = self._header_and_trailer()
        end = self.size + len(tail)
        self.map[self.size : end] = tail
        data = memoryview(self.map)[:end]
        del self.map
        return data  # type: ignore[return-value]  # a buffer: every writer takes one


def read_salt(preamble: bytes, what: str) -> bytes:
    if len(preamble) < PREAMBLE_LEN or preamble[:4] != MAGIC:
        raise IntegrityError(f"{what} has no pack preamble")
    if preamble[4] != VERSION:
        raise IntegrityError(f"{what} is pack version {preamble[4]}, not {VERSION}")
    return bytes(preamble[5:PREAMBLE_LEN])


def parse_header(keys: MasterKeys, data: bytes, what: str) -> tuple[bytes, list[BlobEntry]]:
    """Salt and blob entries of a whole pack, from its own bytes alone."""
    salt = read_salt(data[:PREAMBLE_LEN], what)
    if len(data) < PREAMBLE_LEN + TRAILER.size + OVERHEAD:
        raise IntegrityError(f"{what} is truncated")
    header_len, end = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    start = len(data) - TRAILER.size - header_len
    if end != END_MAGIC or start < PREAMBLE_LEN:
        raise IntegrityError(f"{what} has a damaged trailer (truncated?)")
    plain = pack_sealer(keys, salt).open(
        memoryview(data)[start : start + header_len], b"pack-header" + salt, f"{what} header"
    )
    if len(plain) % ENTRY.size:
        raise IntegrityError(f"{what} header has a partial entry")
    entries = [BlobEntry(*ENTRY.unpack_from(plain, i)) for i in range(0, len(plain), ENTRY.size)]
    for e in entries:
        if e.offset < PREAMBLE_LEN or e.offset + e.length > start:
            raise IntegrityError(f"{what} header points outside the pack")
    return salt, entries
