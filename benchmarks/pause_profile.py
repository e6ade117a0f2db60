#!/usr/bin/env python3
"""What the in-pause work costs, piece by piece (issue 13): the btrfs snapshot ioctl
against the data left dirty before it, and a rollback-journal SQLite database's
in-pause copy (backup API) against its reflink clone, per MB.

Each part makes its own loop-mounted filesystems (sparse images, mkfs, mount -o loop;
root, btrfs-progs, xfsprogs and e2fsprogs needed) under --work and unmounts them at the
end, even on error.

1. btrfs: write D MiB into a subvolume without fsync (what an agent's flush leaves in
   the page cache), then time BTRFS_IOC_SNAP_CREATE_V2 (read-only) alone; then the same
   with a syncfs(2) first, timed apart. The difference is the writeback the snapshot's
   transaction commit waits for (decision 0008: syncfs before the pause, outside it).
2. SQLite: a rollback-journal database of S MB; time sqlite_copy.copy_database (the
   backup API, what runs in the pause on ext4) and sqlite_clone.clone_database (FICLONE
   under the read lock, on btrfs and XFS reflink=1).

Usage: python benchmarks/pause_profile.py [--work DIR] [--rounds 5] [--results FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cleancut.hot import btrfs, sqlite_clone, sqlite_copy
from cleancut.hot.stage_copy import Copier

MIB = 1 << 20
DIRTY_MIB = (0, 1, 8, 32)
DB_MB = (10, 100, 500)
MKFS = {
    "btrfs": ["mkfs.btrfs", "-q"],
    "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)}: {res.stderr.strip()[:300]}")


@contextlib.contextmanager
def mounted(work: Path, kind: str, size: int) -> Iterator[Path]:
    image, mnt = work / f"{kind}.img", work / kind
    mnt.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size)
    try:
        _run(*MKFS[kind], str(image))
        _run("mount", "-o", "loop", str(image), str(mnt))
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    finally:
        image.unlink(missing_ok=True)


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def profile_btrfs(work: Path, rounds: int) -> list[str]:
    rows = []
    with mounted(work, "btrfs", 4 << 30) as mnt:
        sub = mnt / "agent"
        _run("btrfs", "subvolume", "create", str(sub))
        snaps = mnt / "snaps"
        snaps.mkdir()
        src_fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
        place_fd = os.open(snaps, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for dirty in DIRTY_MIB:
                plain: list[float] = []
                synced: list[float] = []
                sync_ms: list[float] = []
                for r in range(rounds):
                    for with_sync in (False, True):
                        os.sync()
                        if dirty:
                            (sub / f"d-{r}-{with_sync}.bin").write_bytes(os.urandom(dirty * MIB))
                        if with_sync:
                            t0 = time.perf_counter()
                            btrfs.syncfs(src_fd)
                            sync_ms.append(ms(t0))
                        name = f"s-{dirty}-{r}-{with_sync}"
                        t0 = time.perf_counter()
                        btrfs.snapshot(src_fd, place_fd, name)
                        (synced if with_sync else plain).append(ms(t0))
                        btrfs.delete(place_fd, name)
                rows.append(
                    f"| {dirty} | {statistics.median(plain):.1f} | {max(plain):.1f} | "
                    f"{statistics.median(sync_ms):.1f} | {statistics.median(synced):.1f} | "
                    f"{max(synced):.1f} | {os.getloadavg()[0]:.1f} |"
                )
                print(rows[-1], flush=True)
        finally:
            os.close(src_fd)
            os.close(place_fd)
    return [
        "btrfs snapshot ioctl (ms, median and max of the rounds) with D MiB written and not "
        "yet written back, without and with a syncfs(2) first (timed apart):",
        "",
        "| dirty MiB | snapshot alone p50 | max | syncfs p50 | snapshot after syncfs p50 "
        "| max | load |",
        "| --------- | ------------------ | --- | ---------- | ------------------------- "
        "| --- | ---- |",
        *rows,
    ]


def profile_settle(work: Path, rounds: int) -> list[str]:
    """The pause's tail on btrfs as the hot backup runs it: the agent's flush writes D
    MiB, the horizon waits H ms, then the snapshot; with and without a syncfs started
    in a thread right after the flush (fs_snapshot.Snapshotter.settle_in_background),
    which the snapshot waits for. Timed: from the end of the flush to the snapshot's
    end (what cleancut adds after the agent's flush, the horizon included)."""
    rows = []
    with mounted(work, "btrfs", 2 << 30) as mnt:
        sub = mnt / "agent"
        _run("btrfs", "subvolume", "create", str(sub))
        snaps = mnt / "snaps"
        snaps.mkdir()
        src_fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
        place_fd = os.open(snaps, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for dirty_kib in (64, 1024, 8192):
                for horizon_ms in (0, 10, 30):
                    cells = {}
                    for settle in (False, True):
                        took = []
                        for r in range(rounds):
                            btrfs.syncfs(src_fd)  # as before the quiesce
                            (sub / f"f-{r}.bin").write_bytes(os.urandom(dirty_kib << 10))
                            t0 = time.perf_counter()
                            thread = None
                            if settle:
                                thread = threading.Thread(target=btrfs.syncfs, args=(src_fd,))
                                thread.start()
                            time.sleep(horizon_ms / 1000)
                            if thread is not None:
                                thread.join()
                            name = f"s-{dirty_kib}-{horizon_ms}-{settle}-{r}"
                            btrfs.snapshot(src_fd, place_fd, name)
                            took.append(ms(t0) - horizon_ms)
                            btrfs.delete(place_fd, name)
                        cells[settle] = statistics.median(took)
                    rows.append(
                        f"| {dirty_kib} | {horizon_ms} | {cells[False]:.1f} | {cells[True]:.1f} "
                        f"| {os.getloadavg()[0]:.1f} |"
                    )
                    print(rows[-1], flush=True)
        finally:
            os.close(src_fd)
            os.close(place_fd)
    return [
        "btrfs, the flush's writes, the horizon, the snapshot: what is added beyond the "
        "horizon's own wait (ms, median of the rounds), without and with a background "
        "syncfs started when the flush ends:",
        "",
        "| flush wrote KiB | horizon ms | snapshot only | background syncfs, then snapshot "
        "| load |",
        "| --------------- | ---------- | ------------- | -------------------------------- "
        "| ---- |",
        *rows,
    ]


def make_db(path: Path, mb: int) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=4096")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t (data) VALUES (randomblob(65536))", [()] * (mb * 16))
    con.execute("COMMIT")
    con.close()


def profile_sqlite(work: Path, rounds: int) -> list[str]:
    rows = []
    for kind in ("ext4", "xfs", "btrfs"):
        with mounted(work, kind, 3 << 30) as mnt:
            for mb in DB_MB:
                db = mnt / f"db-{mb}.sqlite"
                make_db(db, mb)
                size = db.stat().st_size
                copy_ms: list[float] = []
                clone_ms: list[float] = []
                for r in range(rounds):
                    os.sync()
                    dst = str(mnt / f"copy-{r}.sqlite")
                    t0 = time.perf_counter()
                    sqlite_copy.copy_database(str(db), dst, db.name)
                    copy_ms.append(ms(t0))
                    sqlite_copy.remove_copy(dst)
                    if kind == "ext4":
                        continue
                    dst = str(mnt / f"clone-{r}.sqlite")
                    fd = os.open(db, os.O_RDONLY)
                    try:
                        t0 = time.perf_counter()
                        ok = sqlite_clone.clone_database(
                            str(db), fd, dst, os.fstat(fd).st_dev, Copier(), db.name, 5.0
                        )
                        clone_ms.append(ms(t0))
                    finally:
                        os.close(fd)
                    assert ok, f"{kind}: no clone"
                    sqlite_copy.remove_copy(dst)
                cp = statistics.median(copy_ms)
                cl = statistics.median(clone_ms) if clone_ms else None
                rows.append(
                    f"| {kind} | {size / 1e6:.0f} | {cp:.1f} | {cp / (size / 1e6):.2f} | "
                    + (f"{cl:.2f} | {max(clone_ms):.2f}" if cl is not None else "n/a | n/a")
                    + f" | {os.getloadavg()[0]:.1f} |"
                )
                print(rows[-1], flush=True)
                db.unlink()
    return [
        "Rollback-journal SQLite database, what the pause would hold (ms, median of the "
        "rounds): the backup API copy (in the pause wherever there is no reflink) and the "
        "FICLONE under the read lock (btrfs, XFS reflink=1):",
        "",
        "| fs | db MB | backup API copy p50 | ms per MB | clone p50 | clone max | load |",
        "| -- | ----- | ------------------- | --------- | --------- | --------- | ---- |",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/pause-profile"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--results", type=Path)
    ap.add_argument("--only", choices=("snapshot", "settle", "sqlite"), help="one part only")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"## Pause profile — {now}",
        "",
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"- {args.rounds} rounds per cell; load average (1 min) at the end of each row",
        "",
    ]
    if args.only in (None, "snapshot"):
        parts += [*profile_btrfs(work, args.rounds), ""]
    if args.only in (None, "settle"):
        parts += [*profile_settle(work, args.rounds), ""]
    if args.only in (None, "sqlite"):
        parts += profile_sqlite(work, args.rounds)
    text = "\n".join(parts) + "\n"
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
