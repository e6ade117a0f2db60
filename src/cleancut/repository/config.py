"""The repository config: the one plaintext object, fixed at init.

It says what format the repository is in and how to chunk, so every host
chunks alike and deduplicates against the others.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from cleancut import jsonparse
from cleancut.errors import UnknownFormat

from .compress import DEFAULT_LEVEL, NEW_REPOSITORY_LEVEL

FORMAT_VERSION = 1
KIB = 1024
MIB = 1024 * KIB
DEFAULT_PACK_SIZE = 16 * MIB
MIN_PACK_SIZE = 1 * MIB
MAX_PACK_SIZE = 1024 * MIB


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 256 * KIB
    avg_size: int = 1 * MIB
    max_size: int = 4 * MIB

    def validate(self) -> None:
        # FastCDC's own bounds: min >= 64 B, avg >= 256 B, max >= 1 KiB.
        if not (
            64 <= self.min_size <= self.avg_size <= self.max_size <= 64 * MIB
            and self.avg_size >= 256
            and self.max_size >= KIB
        ):
            raise ValueError(
                "chunk sizes must satisfy 64 B <= min <= avg <= max <= 64 MiB, "
                "with avg >= 256 B and max >= 1 KiB"
            )


@dataclass(frozen=True)
class RepoConfig:
    version: int
    id: str
    chunker: ChunkerParams
    pack_size: int = DEFAULT_PACK_SIZE
    compression_level: int = DEFAULT_LEVEL
    profile: str = "standard"  # DEFAULT_PROFILE: the profile sources use unless configured

    @classmethod
    def new(
        cls,
        chunker: ChunkerParams,
        pack_size: int = DEFAULT_PACK_SIZE,
        compression_level: int = NEW_REPOSITORY_LEVEL,
        profile: str = "standard",
    ) -> RepoConfig:
        chunker.validate()
        return cls(
            FORMAT_VERSION, os.urandom(32).hex(), chunker, pack_size, compression_level, profile
        )

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> RepoConfig:
        try:
            raw = jsonparse.loads(data)
            version = raw["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UnknownFormat("the repository config is not readable cleancut JSON") from exc
        if version != FORMAT_VERSION:
            raise UnknownFormat(
                f"repository format version {version} is not supported "
                f"(this cleancut reads version {FORMAT_VERSION}); upgrade cleancut"
            )
        try:
            chunker = ChunkerParams(**raw["chunker"])
            chunker.validate()
        except (TypeError, ValueError, KeyError) as exc:
            raise UnknownFormat(
                f"the repository config has invalid chunker settings: {exc}"
            ) from exc
        return cls(
            version=version,
            id=raw["id"],
            chunker=chunker,
            pack_size=raw.get("pack_size", 16 * MIB),
            compression_level=raw.get("compression_level", DEFAULT_LEVEL),
            profile=raw.get("profile", "standard"),
        )
