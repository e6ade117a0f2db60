#!/usr/bin/env python3
"""CPU per byte of each stage a backup runs on new content, one thread, data in memory.

Why: the first backup's wall time is bounded by its CPU on two cores; this says what
each stage costs (FastCDC chunking, keyed BLAKE3, zstd at levels 1-3, AES-GCM) on the
same bytes a benchmark corpus holds, so a change can be judged by nanoseconds per byte
rather than by a noisy wall clock. Run with the project's interpreter (it imports the
libraries cleancut uses):

    .venv/bin/python benchmarks/stages.py CORPUS_DIR [--limit 256M]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastcdc import fastcdc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402  (sibling module; benchmarks/ is not a package)

MIN, AVG, MAX = 256 << 10, 1 << 20, 4 << 20  # the default chunker (repository/config.py)


def load(root: Path, limit: int) -> list[bytes]:
    files, total = [], 0
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            data = (Path(dirpath) / name).read_bytes()
            files.append(data)
            total += len(data)
            if total >= limit:
                return files
    return files


def timed(name: str, total: int, fn: Callable[[], object]) -> object:
    start = time.process_time()
    result = fn()
    cpu = time.process_time() - start
    print(f"| {name} | {cpu:.3f} | {cpu / total * 1e9:.2f} | {total / cpu / 1e6:,.0f} |")
    return result


def chunks_of(files: list[bytes]) -> list[memoryview]:
    out = []
    for data in files:
        view = memoryview(data)
        if len(data) <= MIN:
            out.append(view)
            continue
        for c in fastcdc(view, min_size=MIN, avg_size=AVG, max_size=MAX):
            out.append(view[c.offset : c.offset + c.length])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--limit", default="256M", help="bytes of the corpus to load")
    args = parser.parse_args()
    files = load(args.corpus, corpus.parse_size(args.limit))
    total = sum(len(f) for f in files)
    print(f"{total:,} bytes in {len(files):,} files\n")
    print("| stage | CPU s | ns per byte | MB/s |")
    print("|---|---|---|---|")
    chunks = timed("FastCDC 256 KiB / 1 MiB / 4 MiB", total, lambda: chunks_of(files))
    assert isinstance(chunks, list)
    key = os.urandom(32)
    timed(
        "BLAKE3 keyed (blob ID)",
        total,
        lambda: [blake3.blake3(c, key=key).digest() for c in chunks],
    )
    packed: list[bytes] = []
    for level in (1, 3, 2):  # level 2 last: what new repositories use, then sealed
        z = zstandard.ZstdCompressor(level=level)
        packed = timed(f"zstd level {level}", total, lambda z=z: [z.compress(c) for c in chunks])  # type: ignore[assignment]
        ratio = total / sum(len(p) for p in packed)
        print(f"|   (level {level} ratio {ratio:.3f}) | | | |")
    aead = AESGCM(key)
    nonce = os.urandom(12)
    timed(
        "AES-256-GCM of the level-2 output",
        total,
        lambda: [aead.encrypt(nonce, p, b"") for p in packed],
    )


if __name__ == "__main__":
    main()
