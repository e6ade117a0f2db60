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
3. capture (ext4): the simulated agent runs flat out for --agent-seconds, then each round
   runs what a hot backup runs around the pause, in this process: prepare, the racy
   window's sleep, prepare again, 20 ms for the hello, quiesce and flush, SIGSTOP of
   the agent's process group (the pause), capture(defer=True) and
   changed_since_capture(), SIGCONT, finish(). Three stagers take
   turns on the same agent, each with its own staging directory on the same filesystem:
   as built, with the tracker's vouch only (as on a kernel without multigrain ctimes),
   and one that copies every racy file again (the rule before decision 0020).
   Inside the pause, each piece is timed: whole copies, tails, WAL pins, the check.
4. pin (ext4): a live WAL database of 10 MB and of 2 GB (pause_cases.LiveDb, 1 MiB row
   rewritten per round): the time to pin it (open, read transaction) and to release it.

Usage: python benchmarks/pause_profile.py [--work DIR] [--rounds 5] [--results FILE]
                                          [--only snapshot|settle|sqlite|capture|pin]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cleancut.fsio.racy import FINE_WINDOW_NS, is_racy
from cleancut.hot import btrfs, sqlite_clone, sqlite_copy
from cleancut.hot.stage import Stager
from cleancut.hot.stage_copy import Copier
from cleancut.hot.stage_manifest import _COPIED, _CTIME, Entry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pause_cases import LiveDb  # noqa: E402  (sibling module; benchmarks/ is not a package)

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


class RacyRuleStager(Stager):
    """The stager as it was before decision 0020: every racy file is copied again."""

    def _racy(self, rel: str, old: Entry, vouched: set[str]) -> bool:
        return is_racy(old[_CTIME], old[_COPIED])


class TrackerOnlyStager(Stager):
    """The stager as built on a kernel without multigrain ctimes: only the tracker's
    silence vouches for a racy copy (decision 0020, proof 1)."""

    def track(self) -> str | None:
        why = super().track()
        self._ctime_why = "profile: fine ctimes not used"
        return why


class PieceTimer:
    """Times the pieces of a stager's in-pause pass by wrapping its methods."""

    PIECES = ("_copy_plain", "_append_tail", "_pin_db", "changed_since_capture")

    def __init__(self, stager: Stager) -> None:
        self.ms: dict[str, float] = {}
        self.on = False
        for name in self.PIECES:
            setattr(stager, name, self._wrap(name, getattr(stager, name)))

    def _wrap(self, name: str, fn: object) -> object:
        def timed(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)  # type: ignore[operator]
            finally:
                if self.on:
                    self.ms[name] = self.ms.get(name, 0.0) + ms(t0)

        return timed


def _start_agent(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleancut.testing.simulated", "run", "--root", str(root / "agent"),
         "--socket", str(root / "agent.sock"), "--oracle", str(root / "agent.oracle"),
         "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("ready"):
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError("the simulated agent did not start")
    return proc


# Between the last prepare and the capture a hot backup says hello, quiesces and flushes
# the agent, which writes meanwhile: so many ms of the agent running stand in for that.
QUIESCE_GAP_S = 0.02


def _capture_round(stager: Stager, timer: PieceTimer, agent: int) -> dict[str, float]:
    stager.prepare()
    time.sleep(FINE_WINDOW_NS / 1e9)  # as hot/orchestrator.py does after a copying prepare
    stager.prepare()
    time.sleep(QUIESCE_GAP_S)
    timer.ms, timer.on = {}, True
    os.killpg(agent, signal.SIGSTOP)
    t0 = time.perf_counter()
    try:
        stats = stager.capture(defer=True)
        stager.changed_since_capture()
    finally:
        took = ms(t0)
        os.killpg(agent, signal.SIGCONT)
        timer.on = False
    stager.finish()
    return {
        "pause": took, "bytes": stats.bytes_copied - stats.bytes_after_resume,
        "files": stats.files_copied, "tails": stats.tails, "vouched": stats.racy_vouched,
        **{k.strip("_"): v for k, v in timer.ms.items()},
    }  # fmt: skip


def profile_capture(work: Path, rounds: int, agent_seconds: float) -> list[str]:
    rows = []
    with mounted(work, "ext4", 4 << 30) as mnt:
        agent = _start_agent(mnt)
        try:
            time.sleep(agent_seconds)
            variants = {
                "as built": Stager,
                "tracker's vouch only": TrackerOnlyStager,
                "racy rule (before 0020)": RacyRuleStager,
            }
            stagers = {k: cls(mnt / "agent", mnt / f"staging-{i}")
                       for i, (k, cls) in enumerate(variants.items())}  # fmt: skip
            timers = {k: PieceTimer(st) for k, st in stagers.items()}
            samples: dict[str, list[dict[str, float]]] = {k: [] for k in stagers}
            with contextlib.ExitStack() as stack:
                for st in stagers.values():
                    stack.enter_context(st.lock())
                    st.track()
                    st.prepare()
                for _ in range(rounds):
                    for k, st in stagers.items():  # turn by turn, under the same load
                        samples[k].append(_capture_round(st, timers[k], agent.pid))
            size = sum(f.stat().st_size for f in (mnt / "agent").rglob("*.jsonl"))
        finally:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait()
    for k, got in samples.items():

        def col(key: str, got: list[dict[str, float]] = got) -> list[float]:
            return [g.get(key, 0.0) for g in got]

        def p50(key: str) -> float:
            return statistics.median(col(key))

        rows.append(
            f"| {k} | {p50('pause'):.1f} | {max(col('pause')):.1f} | "
            f"{p50('bytes') / 1e6:.2f} | {max(col('bytes')) / 1e6:.2f} | {p50('files'):.0f} | "
            f"{p50('tails'):.0f} | {p50('vouched'):.0f} | {p50('copy_plain'):.2f} | "
            f"{p50('append_tail'):.2f} | {p50('pin_db'):.2f} | "
            f"{p50('changed_since_capture'):.2f} | {os.getloadavg()[0]:.1f} |"
        )
        print(rows[-1], flush=True)
    return [
        f"ext4, the in-pause pass on the simulated agent after {agent_seconds:.0f} s of "
        f"running flat out (its JSONL files: {size / 1e6:.1f} MB at the end), {rounds} rounds "
        "per stager taken in turns: the pass and the check, timed from SIGSTOP to SIGCONT "
        "(ms); bytes copied in it (MB); files copied, tails, racy files vouched for by the "
        "tracker (p50); and the pieces inside it (ms, p50 of each round's sum):",
        "",
        "| stager | pause p50 | max | MB copied p50 | max | files | tails | vouched "
        "| whole copies | tails ms | WAL pins | check | load |",
        "| ------ | --------- | --- | ------------- | --- | ----- | ----- | ------- "
        "| ------------ | -------- | -------- | ----- | ---- |",
        *rows,
    ]


def profile_pin(work: Path, rounds: int) -> list[str]:
    rows = []
    with mounted(work, "ext4", 4 << 30) as mnt:
        for label, size in (("10 MB", 10 * 1000 * 1000), ("2 GB", 2 * 1000 * 1000 * 1000)):
            live = LiveDb(mnt / f"live-{label.replace(' ', '')}.sqlite", size)
            pin_ms, release_ms = [], []
            rng = random.Random(1)
            try:
                for _ in range(rounds):
                    live.change(rng)
                    t0 = time.perf_counter()
                    pin = sqlite_copy.pin(str(live.path), live.path.name)
                    pin_ms.append(ms(t0))
                    assert pin is not None
                    t0 = time.perf_counter()
                    pin.release()
                    release_ms.append(ms(t0))
            finally:
                live.close()
            wal = live.path.with_name(live.path.name + "-wal")
            rows.append(
                f"| {label} | {live.path.stat().st_size / 1e6:.0f} | "
                f"{wal.stat().st_size / 1e6 if wal.exists() else 0:.1f} | "
                f"{statistics.median(pin_ms):.2f} | {max(pin_ms):.2f} | "
                f"{statistics.median(release_ms):.2f} | {os.getloadavg()[0]:.1f} |"
            )
            print(rows[-1], flush=True)
            live.path.unlink()
    return [
        "ext4, pinning a live WAL database (open read-only, BEGIN, read sqlite_master) after "
        "a 1 MiB row was rewritten, as the in-pause capture does (ms):",
        "",
        "| database | file MB | -wal MB | pin p50 | pin max | release p50 | load |",
        "| -------- | ------- | ------- | ------- | ------- | ----------- | ---- |",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/pause-profile"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--results", type=Path)
    ap.add_argument(
        "--only", choices=("snapshot", "settle", "sqlite", "capture", "pin"), help="one part only"
    )
    ap.add_argument("--agent-seconds", type=float, default=60.0, help="capture: agent's head start")
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
        parts += [*profile_sqlite(work, args.rounds), ""]
    if args.only in (None, "capture"):
        parts += [*profile_capture(work, args.rounds, args.agent_seconds), ""]
    if args.only in (None, "pin"):
        parts += profile_pin(work, args.rounds)
    text = "\n".join(parts) + "\n"
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
