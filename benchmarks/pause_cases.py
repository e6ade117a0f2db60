"""The cases of the pause benchmark's matrix (issue 13) and the workspaces they need.

Issue 13 asks for cleancut's share of the pause at 1,000 / 10,000 / 100,000 files, at
0.25 / 1 / 4 GiB, with a live SQLite database of 10 MB and of 2 GB, and after the
transcripts have grown to 100 MB, on ext4 and on btrfs. Varying every axis at once would
be 54 cases per filesystem; the matrix varies ONE axis at a time from a small base case
(1,000 files, 0.25 GiB, a 10 MB database, 1 MiB of transcripts), so each axis's largest
case is compared with the same base.

Making the big cases fast, where content does not matter to the pause:
- bulk files are sparse: a distinct 64-byte header, then a hole up to the file's size
  (`make_sparse_bulk`), 16 files per directory so 100,000 files are 6,250 directories
  rather than 65,536 (the simulated workspace's 256 x 256 fan-out);
- the live database is built in one transaction of 1 MiB zero blobs with the journal
  off, then switched to WAL (`LiveDb`), and kept open by the benchmark: each round
  rewrites one row (1 MiB), so the database is changed and in WAL mode at every capture;
- transcripts are JSONL files of 1 KiB lines written in one go, appended each round.
Everything lives under workspace/attachments/bench, which the simulated agent's checker
leaves out (bulk data, not agent state).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIB, GIB = 1 << 20, 1 << 30
FILES_PER_DIR = 16
DB_ROW = MIB  # one blob row of the live database
DB_CHANGE_ROWS = 1  # rows rewritten per round (1 MiB)
TRANSCRIPTS = 4  # files the transcript bytes are spread over
TRANSCRIPT_APPEND = 64 << 10  # bytes appended to each transcript per round
LINE = 1024  # bytes per transcript line, newline included


@dataclass(frozen=True)
class Case:
    """One cell of the matrix: the base case with (at most) one axis moved."""

    name: str  # "base", "files-10k", ...
    axis: str  # "base", "files", "bytes", "db", "transcripts"
    files: int
    bytes: int
    db_bytes: int
    transcript_bytes: int
    fs: str  # "ext4", "btrfs" (a loop image the benchmark makes) or "native"
    sparse: bool = True  # bulk as sparse files (matrix) or incompressible data (--sizes)

    @property
    def label(self) -> str:
        return f"{self.fs}/{self.name}"

    def value(self) -> int:
        """The case's value on its axis (the base case's on every axis)."""
        return {
            "files": self.files,
            "bytes": self.bytes,
            "db": self.db_bytes,
            "transcripts": self.transcript_bytes,
        }.get(self.axis, 0)

    def disk_bytes(self) -> int:
        """What the agent root holds, written (not sparse)."""
        return self.db_bytes + self.transcript_bytes + (0 if self.sparse else self.bytes)


BASE = {"files": 1_000, "bytes": GIB // 4, "db_bytes": 10 * 1000 * 1000,
        "transcript_bytes": MIB}  # fmt: skip
AXES: dict[str, list[tuple[str, dict[str, int]]]] = {
    "files": [("files-10k", {"files": 10_000}), ("files-100k", {"files": 100_000})],
    "bytes": [("bytes-1G", {"bytes": GIB}), ("bytes-4G", {"bytes": 4 * GIB})],
    "db": [("db-2G", {"db_bytes": 2 * 1000 * 1000 * 1000})],
    "transcripts": [("transcripts-100M", {"transcript_bytes": 100 * MIB})],
}


def matrix(filesystems: list[str], names: list[str] | None = None) -> list[Case]:
    """The base case and each axis's other values, per filesystem (in that order)."""
    out = []
    for fs in filesystems:
        cells = [Case("base", "base", fs=fs, **BASE)]
        for axis, steps in AXES.items():
            cells += [Case(name, axis, fs=fs, **{**BASE, **moved}) for name, moved in steps]
        out += [c for c in cells if names is None or c.name in names]
    return out


def case_names() -> list[str]:
    return ["base"] + [name for steps in AXES.values() for name, _ in steps]


# --------------------------------------------------------------------------- workspace


def sparse_path(attachments: Path, n: int) -> Path:
    d = n // FILES_PER_DIR
    return attachments / f"{d >> 8:03x}" / f"{d & 0xFF:02x}" / f"att-{n:06d}.bin"


def make_sparse_bulk(attachments: Path, total: int, files: int, seed: int) -> None:
    """`files` files summing to `total` bytes: a distinct header each, the rest a hole."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.5, 1.5) for _ in range(files)]
    scale = total / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[-1] += total - sum(sizes)
    made: set[Path] = set()
    for n, size in enumerate(sizes):
        path = sparse_path(attachments, n)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"att-{n} seed {seed}\n".encode().ljust(64, b".")[: min(64, size)])
            os.ftruncate(fd, size)
        finally:
            os.close(fd)


class LiveDb:
    """A WAL-mode SQLite database of `size` bytes that the benchmark changes each round."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.rows = max(1, size // DB_ROW)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA page_size=65536")
        con.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, gen INTEGER, data BLOB)")
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO blobs (id, gen, data) VALUES (?, 0, zeroblob(?))",
            ((i, DB_ROW) for i in range(self.rows)),
        )
        con.execute("COMMIT")
        con.close()
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.generation = 0

    def change(self, rng: random.Random) -> int:
        """Rewrite DB_CHANGE_ROWS rows with new bytes in one transaction; bytes written."""
        self.generation += 1
        self.con.execute("BEGIN IMMEDIATE")
        for _ in range(DB_CHANGE_ROWS):
            self.con.execute(
                "UPDATE blobs SET gen = ?, data = randomblob(?) WHERE id = ?",
                (self.generation, DB_ROW, rng.randrange(self.rows)),
            )
        self.con.execute("COMMIT")
        return DB_CHANGE_ROWS * DB_ROW

    def close(self) -> None:
        self.con.close()


def _lines(label: str, start: int, nbytes: int) -> bytes:
    out, n, size = [], start, 0
    while size < nbytes:
        head = json.dumps({"type": "message", "id": f"{label}-{n}", "text": ""})[:-2]
        line = (head + "x" * (LINE - len(head) - 3) + '"}\n').encode()
        out.append(line)
        size += len(line)
        n += 1
    return b"".join(out)


class Transcripts:
    """JSONL files (valid, 1 KiB lines) summing to `size` bytes, appended each round."""

    def __init__(self, directory: Path, size: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"t-{i}.jsonl" for i in range(TRANSCRIPTS)]
        self.lines = [0] * TRANSCRIPTS
        for i, path in enumerate(self.paths):
            data = _lines(path.stem, 0, size // TRANSCRIPTS)
            path.write_bytes(data)
            self.lines[i] = data.count(b"\n")

    def append(self) -> int:
        for i, path in enumerate(self.paths):
            data = _lines(path.stem, self.lines[i], TRANSCRIPT_APPEND)
            with open(path, "ab") as f:
                f.write(data)
            self.lines[i] += data.count(b"\n")
        return TRANSCRIPT_APPEND * TRANSCRIPTS


# --------------------------------------------------------------------------- loop images


def mount_image(d: Path, size: int, fs: str) -> Path:
    """A fresh `fs` filesystem in a sparse image, loop-mounted on `d` (made empty).

    For btrfs the agent root `d/agent` is made a subvolume (the snapshot strategy needs a
    subvolume root). Raises RuntimeError, with nothing left mounted, when a step fails.
    """
    image = d.parent / f"{d.name}.{fs}.img"
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(size)
    mkfs = (
        ["mkfs.btrfs", "-q", str(image)]
        if fs == "btrfs"
        else [
            "mkfs.ext4",
            "-q",
            "-F",
            "-i",
            "4096",  # inodes: agent root + staging + restore
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            str(image),
        ]
    )
    steps = [mkfs, ["mount", "-o", "loop", str(image), str(d)]]
    if fs == "btrfs":
        steps.append(["btrfs", "subvolume", "create", str(d / "agent")])
    mounted = False
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 and cmd[0] == "mount":
            subprocess.run(["modprobe", fs], capture_output=True)
            res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            if mounted:
                subprocess.run(["umount", str(d)], capture_output=True)
            image.unlink(missing_ok=True)
            raise RuntimeError(f"--fs {fs}: {' '.join(cmd)}: {res.stderr.strip()[:300]}")
        mounted = mounted or cmd[0] == "mount"
    return image


def unmount_image(d: Path, image: Path) -> None:
    """Unmount (lazily if busy) and delete the image."""
    if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
    image.unlink(missing_ok=True)
