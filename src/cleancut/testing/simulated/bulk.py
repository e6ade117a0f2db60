"""Bulk attachments for the pause benchmark: a large, static workspace with a little churn.

The pause of a hot backup should grow with what changed, not with the size of
the workspace. These files make the workspace large (e.g. 10,000 files, 1 GiB)
while `churn` changes a few MiB between two backups. Content is incompressible
and distinct per file (a seeded SHAKE-128 stream per file and per change), so
neither compression nor deduplication makes the benchmark look better than a
real workspace would.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from .layout import Layout


def _data(seed: int, label: str, size: int) -> bytes:
    """`size` bytes unique to (seed, label): a SHAKE-128 stream, about 400 MB/s."""
    head = f"{label}\n".encode()[:size]
    return head + hashlib.shake_128(f"cleancut-bulk\x1f{seed}\x1f{label}".encode()).digest(
        size - len(head))


def bulk_path(root: Path, n: int) -> Path:
    """File n under two levels of fan-out (256 × 256), like a content store's."""
    h = hashlib.sha256(str(n).encode()).hexdigest()
    return Layout(root).attachments / h[:2] / h[2:4] / f"att-{n:06d}.bin"


def make_bulk(root: Path, total_bytes: int, files: int, seed: int) -> list[Path]:
    """Write `files` files totalling exactly `total_bytes` under workspace/attachments/."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.5, 1.5) for _ in range(files)]
    scale = total_bytes / sum(weights) if weights else 0
    sizes = [int(w * scale) for w in weights]
    if sizes:
        sizes[-1] += total_bytes - sum(sizes)
    made = []
    for n, size in enumerate(sizes):
        path = bulk_path(root, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_data(seed, f"att-{n} gen-0", size))
        made.append(path)
    return made


def churn(root: Path, nbytes: int, rng: random.Random) -> int:
    """Rewrite, extend or add bulk files until about `nbytes` changed; the bytes written."""
    existing = sorted(Layout(root).attachments.rglob("att-*.bin"))
    seed = rng.randrange(1 << 30)
    written = 0
    while written < nbytes:
        piece = min(nbytes - written, rng.randint(256 << 10, 4 << 20))
        action = rng.random() if existing else 1.0
        if action < 0.5:  # overwrite a region in place
            path = rng.choice(existing)
            size = path.stat().st_size
            offset = rng.randrange(0, max(1, size - piece))
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(_data(seed, f"churn {path.name} {offset} {written}", piece))
        elif action < 0.8:  # append
            path = rng.choice(existing)
            with open(path, "ab") as f:
                f.write(_data(seed, f"append {path.name} {written}", piece))
        else:  # a new file
            n = len(existing) + rng.randrange(1 << 20)
            path = bulk_path(root, n)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_data(seed, f"att-{n} new {written}", piece))
            existing.append(path)
        written += piece
    return written


def total_size(root: Path) -> int:
    return sum(os.path.getsize(p) for p in Layout(root).attachments.rglob("*") if p.is_file())
