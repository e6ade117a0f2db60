"""Index segments: which pack holds which blob.

An index segment is an encrypted object (kind "index") whose plaintext is:

    "CCIX" | version u8 | n_supersedes u32 | superseded segment ids (32 each)
    n_packs u32 | per pack: pack id (32) | salt (16) | pack size u64 |
                            n_entries u32 | entries (pack.ENTRY each)

A segment is written only after every pack it names is durable, and before
any snapshot that uses those blobs. `supersedes` lets a later prune replace
segments without a window where a blob is indexed nowhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cleancut.errors import IntegrityError

from .pack import ENTRY, BlobEntry

INDEX_PREFIX = "index/"
MAGIC = b"CCIX"
VERSION = 1
_U32 = struct.Struct("<I")
_PACK = struct.Struct("<32s16sQI")


@dataclass
class PackRecord:
    pack_id: str
    salt: bytes
    size: int
    entries: list[BlobEntry]


@dataclass
class IndexSegment:
    packs: list[PackRecord] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        out = [MAGIC, bytes([VERSION]), _U32.pack(len(self.supersedes))]
        out += [bytes.fromhex(s) for s in self.supersedes]
        out.append(_U32.pack(len(self.packs)))
        for p in self.packs:
            out.append(_PACK.pack(bytes.fromhex(p.pack_id), p.salt, p.size, len(p.entries)))
            out += [ENTRY.pack(e.type, e.id, e.offset, e.length, e.raw_length) for e in p.entries]
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes, what: str) -> IndexSegment:
        try:
            if data[:4] != MAGIC or data[4] != VERSION:
                raise IntegrityError(f"{what} is not an index segment of version {VERSION}")
            pos = 5
            (n_sup,) = _U32.unpack_from(data, pos)
            pos += 4
            supersedes = [data[pos + 32 * i : pos + 32 * (i + 1)].hex() for i in range(n_sup)]
            pos += 32 * n_sup
            (n_packs,) = _U32.unpack_from(data, pos)
            pos += 4
            packs = []
            for _ in range(n_packs):
                pid, salt, size, n = _PACK.unpack_from(data, pos)
                pos += _PACK.size
                entries = [
                    BlobEntry(*ENTRY.unpack_from(data, pos + ENTRY.size * i)) for i in range(n)
                ]
                pos += ENTRY.size * n
                packs.append(PackRecord(pid.hex(), salt, size, entries))
        except (struct.error, IndexError) as exc:
            raise IntegrityError(f"{what} is malformed") from exc
        if pos != len(data):
            raise IntegrityError(f"{what} has trailing bytes")
        return cls(packs, supersedes)
