"""Offsite with a fleet, against the real S3 server (SeaweedFS, tests/s3server.py).

Several hosts backing up into one bucket while another prunes; snapshots copied
from a local repository to the bucket and back; bandwidth caps measured on the
wire; append-only agent hosts and credentials that cannot delete. Each cleancut
run is a separate process, as on a real host. The server, its fixtures and the
CLI helpers are those of tests/test_s3.py (one server for this module).

The defects these tests found (docs/decisions/0004-object-store-concurrency.md,
section 5) are fixed; their tests now hold the fixes in place.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import obstore
import pytest
import test_s3
from conftest import CLI, PASSWORD, assert_no_traceback, tree_state
from s3server import BUCKET, FaultProxy, Server, s3_env
from test_s3 import at, bucket_objects, init_small_packs, s3_cli

from cleancut.testing.sample import make_workspace, mutate_workspace

# The fixtures of tests/test_s3.py: one SeaweedFS for this module, a fresh prefix per test.
seaweed = test_s3.seaweed
module_proxy = test_s3.module_proxy
proxy = test_s3.proxy
prefix = test_s3.prefix

PASSWORD_S3 = "the offsite repository's own passphrase"
PASSWORD_BACK = "and the one of the repository copied back"
MiB = 1 << 20


def kdf() -> tuple[str, ...]:
    return ("--kdf-memory", "8MiB", "--kdf-iterations", "1")


def no_aws(cli: CLI) -> CLI:
    """A local-repository CLI that reaches the test server, not the machine's AWS settings."""
    cli.env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    return cli


# --- 1. many writers and a pruner on one bucket ------------------------------------------

WRITERS = 4
MARGIN = 20.0  # prune's safety margin, in real seconds: longer than any backup here takes
PAUSE = 1.0  # seconds between a writer's backups (an agent host is not backing up non-stop)
MIN_ROUNDS, MAX_ROUNDS = 5, 16
DEADLINE = 80.0  # seconds: writers stop after this even if prune never deleted
# Backups that may fail beside a prune, and succeed when run again (as the next tick does):
RETRYABLE = {
    # by design: it deduplicated against a pack prune took out of the index meanwhile
    "refused": re.compile(r"left the index while it ran \(a concurrent prune\)"),
    # a bug (fixed): an object listed a moment before was gone when read
    "vanished": re.compile(r"object (records|snapshots|index)/\w+ is missing from the repository"),
}


def _shared(tag: str, size: int) -> bytes:
    """The same bytes on every host (a model file, a shared tool): deduplicated across them."""
    return random.Random(tag).randbytes(size)


def shared_files(root: Path, rnd: int) -> None:
    (root / "shared").mkdir(parents=True, exist_ok=True)
    for k in range(3):
        (root / "shared" / f"base-{k}.bin").write_bytes(_shared(f"base-{k}", 192 << 10))
    # The fleet's current shared file: identical on every host in the same round, so
    # concurrent backups upload the same blobs, and a later round makes it garbage.
    (root / "shared" / "round.bin").write_bytes(_shared(f"round-{rnd}", 384 << 10))


def evolve(root: Path, writer: int, rnd: int) -> None:
    """One round of an agent's work: shared files, its own data, edits and deletions."""
    if rnd == 0:
        make_workspace(root, seed=writer + 1)
        (root / "own").mkdir()
    else:
        mutate_workspace(root, seed=100 * writer + rnd)
    shared_files(root, rnd)
    (root / "own" / f"data-{rnd}.bin").write_bytes(_shared(f"own-{writer}-{rnd}", 256 << 10))
    (root / "own" / f"data-{rnd - 2}.bin").unlink(missing_ok=True)
    with (root / "own" / "notes.md").open("a") as notes:
        notes.write(f"round {rnd} of writer {writer}\n")


def retired_host(admin: CLI, root: Path) -> str:
    """Before the fleet starts: a host now retired left a full that holds the fleet's
    shared files and 1.5 MiB of its own, then two small fulls. `forget --keep-last 2`
    forgets the first at once; the writers' first backups deduplicate against its packs
    while the pruner decides whether they are still needed."""
    shared_files(root, 0)
    (root / "junk.bin").write_bytes(_shared("retired", 1536 << 10))
    first = admin.ok("backup", str(root), "--name", "retired", "--full", "--json").json()
    shutil.rmtree(root)
    for i in range(2):
        root.mkdir()
        (root / "note.md").write_text(f"retired {i}\n")
        admin.ok("backup", str(root), "--name", "retired", "--full")
        shutil.rmtree(root)
    return first["snapshot_id"]


class Fleet:
    """Four writers and one pruner, as threads that each run cleancut processes."""

    def __init__(self, tmp_path: Path, endpoint: str, url: str) -> None:
        self.tmp_path, self.endpoint, self.url = tmp_path, endpoint, url
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.writers_done = threading.Event()
        self.states: dict[str, dict[str, Any]] = {}  # snapshot id -> the tree it holds
        self.last: dict[str, str] = {}  # source -> its newest snapshot id
        self.backups: list[tuple[float, float]] = []  # (start, end) of every backup
        self.prunes: list[tuple[float, float, int]] = []  # (start, end, bytes deleted)
        self.forgotten: set[str] = set()
        self.marked = self.reindexed = 0
        self.retried: dict[str, list[str]] = {kind: [] for kind in RETRYABLE}
        self.started = time.monotonic()

    def writer(self, i: int) -> int:
        cli = s3_cli(self.tmp_path, self.endpoint, self.url, cache=f"host-{i}")
        root = self.tmp_path / f"agent{i}"
        rounds = 0
        for rnd in range(MAX_ROUNDS):
            if rnd >= MIN_ROUNDS and self.stop.is_set():
                break
            evolve(root, i, rnd)
            state = tree_state(root)
            args = ["backup", str(root), "--name", f"agent{i}", "--json"]
            snap, start, end = self.backup(cli, *args, *(["--full"] if rnd % 3 == 0 else []))
            assert snap["kind"] == ("full" if rnd % 3 == 0 else "incremental"), snap
            with self.lock:
                self.states[snap["snapshot_id"]] = state
                self.last[f"agent{i}"] = snap["snapshot_id"]
                self.backups.append((start, end))
            rounds += 1
            time.sleep(PAUSE)
        return rounds

    def backup(self, cli: CLI, *args: str) -> tuple[dict[str, Any], float, float]:
        """Run a backup, again if it failed in one of the RETRYABLE ways (counted)."""
        for _ in range(4):
            start = time.monotonic()
            res = cli.run(*args)
            if res.code == 0:
                return res.json(), start, time.monotonic()
            kind = next((k for k, p in RETRYABLE.items() if p.search(res.err)), None)
            assert kind, f"backup exited {res.code}: {res.err}"
            with self.lock:
                self.retried[kind].append(res.err.strip())
        raise AssertionError(f"backup failed 4 times: {self.retried}")

    def pruner(self) -> int:
        cli = s3_cli(self.tmp_path, self.endpoint, self.url, cache="trusted")
        runs = 0
        while not self.writers_done.is_set():
            forgot = cli.ok("forget", "--keep-last", "2", "--json").json()
            start = time.monotonic()
            report = cli.ok("prune", "--safety-margin", f"{MARGIN:g}s", "--json").json()
            end = time.monotonic()
            runs += 1
            with self.lock:
                self.forgotten.update(forgot["forgotten"])
                self.prunes.append((start, end, report["deleted"]["bytes"]))
                self.marked += report["marked"]["count"] + report["repacked"]["count"]
                self.reindexed += report["reindexed"]["count"]
                deleted = sum(b for _, _, b in self.prunes)
            if deleted and runs >= 3 or end - self.started > DEADLINE:
                self.stop.set()  # enough seen: writers finish their minimum rounds and stop
            time.sleep(PAUSE)
        return runs


def test_four_writers_and_a_pruner_lose_nothing(seaweed: Server, prefix: str, tmp_path: Path):
    url = f"s3://{BUCKET}/{prefix}"
    admin = s3_cli(tmp_path, seaweed.endpoint, url, cache="admin")
    init_small_packs(admin)  # 1 MiB packs, 256 KiB chunks: many packs, many to prune
    retired = retired_host(admin, tmp_path / "retired")
    # Nothing runs yet, so this first prune may note the segments as seen an hour ago:
    # every backup that wrote them has committed. The fleet's prunes need not wait a
    # margin before they can mark the retired host's packs.
    admin.ok("prune", "--safety-margin", f"{MARGIN:g}s", env={"CLEANCUT_NOW": "1h ago"})

    fleet = Fleet(tmp_path, seaweed.endpoint, url)
    with ThreadPoolExecutor(WRITERS + 1) as pool:
        pruner = pool.submit(fleet.pruner)
        writers = [pool.submit(fleet.writer, i) for i in range(WRITERS)]
        try:
            rounds = [w.result() for w in writers]
        finally:
            fleet.stop.set()
            fleet.writers_done.set()
        prune_runs = pruner.result()

    # The margin is an assumption about backups (docs/architecture.md, "Deletion is two-phase"):
    # had one taken longer, a loss would be the test's fault, not prune's.
    longest = max(end - start for start, end in fleet.backups)
    assert longest < MARGIN, f"a backup took {longest:.1f}s, past the {MARGIN:g}s margin"
    assert min(rounds) >= MIN_ROUNDS and prune_runs >= 3

    # Prune really deleted, while backups were running (else this test proves nothing).
    overlapping = [
        (start, end, deleted)
        for start, end, deleted in fleet.prunes
        if deleted and any(b_start < end and start < b_end for b_start, b_end in fleet.backups)
    ]
    assert overlapping, f"no prune deleted anything while backups ran: {fleet.prunes}"
    assert retired in fleet.forgotten and fleet.marked

    # What exists is exactly what was backed up and not forgotten, and every bit restores.
    verifier = s3_cli(tmp_path, seaweed.endpoint, url, cache="verifier")  # a fresh host
    existing = {
        s["id"] for s in verifier.ok("snapshots", "--json").json() if s["name"] != "retired"
    }
    assert existing == set(fleet.states) - fleet.forgotten
    assert set(fleet.last.values()) <= existing

    def restores(snapshot_id: str) -> bool:
        target = tmp_path / "restored" / snapshot_id[:12]
        verifier.ok("restore", snapshot_id, "--target", str(target))
        same = tree_state(target) == fleet.states[snapshot_id]
        shutil.rmtree(target)
        return same

    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(existing, pool.map(restores, existing), strict=True))
    assert all(results.values()), [sid[:12] for sid, ok in results.items() if not ok]
    verifier.ok("check", "--read-data")
    refused, vanished = fleet.retried["refused"], fleet.retried["vanished"]
    print(
        f"fleet: {sum(rounds)} backups (longest {longest:.1f}s), {prune_runs} prunes, "
        f"{sum(b for _, _, b in fleet.prunes)} bytes deleted, {fleet.marked} marked, "
        f"{fleet.reindexed} re-indexed; backups run again: {len(refused)} refused "
        f"(deduplicated against a marked pack), {len(vanished)} on the list-then-get race"
    )
    if vanished:
        warnings.warn(
            f"{len(vanished)} backup(s) failed on an object pruned between list and get, "
            f"and succeeded when run again: {vanished[0]}",
            stacklevel=1,
        )


def _vanish_on_first_get(proxy: FaultProxy, prefix: str, kind: str, action: Any) -> list[str]:
    """Run `action(key)` when the first GET of an object under PREFIX/KIND/ arrives, before
    it reaches the server: the object was listed, and is now gone (or replaced)."""
    fired: list[str] = []

    def hook(method: str, path: str) -> None:
        wanted = method == "GET" and f"/{prefix}/{kind}/" in path and "list-type" not in path
        if wanted and not fired:
            key = path.split("?")[0][len(f"/{BUCKET}/") :]
            fired.append(key)
            action(key)

    proxy.on_request = hook
    return fired


@pytest.mark.parametrize("kind", ["records", "snapshots", "index"])
def test_an_object_gone_between_list_and_get_is_not_an_error(
    seaweed: Server, proxy: FaultProxy, prefix: str, tmp_path: Path, kind: str
):
    """A host that opens the repository while a prune or forget runs elsewhere: the prune
    replaces its mark record (records/), forget deletes snapshot records (snapshots/),
    marking replaces index segments (index/). The fleet test meets these by chance; here
    each happens on cue, on a host with an empty cache (it reads everything)."""
    url = f"s3://{BUCKET}/{prefix}"
    trusted = s3_cli(tmp_path, seaweed.endpoint, url, cache="trusted")
    trusted.init()
    src = tmp_path / "agent"
    make_workspace(src)
    (src / "big.bin").write_bytes(os.urandom(2 * MiB))
    trusted.ok("backup", str(src), "--name", "agent", "--json", env=at(0))
    (src / "big.bin").unlink()
    trusted.ok("backup", str(src), "--name", "agent", "--full", env=at(100))
    trusted.ok("prune", env=at(100.5))  # notes the segments as seen, in a prune-mark record
    trusted.ok("forget", "--keep-last", "1", env=at(101))  # the first chain's packs: unused

    def delete(key: str) -> None:
        obstore.delete(seaweed.store(), key)

    pruned: list[dict[str, Any]] = []

    def mark(key: str) -> None:
        pruned.append(trusted.run("prune", "--json", env=at(102)).json())

    fired = _vanish_on_first_get(proxy, prefix, kind, mark if kind == "index" else delete)
    victim = s3_cli(tmp_path, proxy.endpoint, url, cache="victim")  # a fresh host
    mutate_workspace(src)
    res = victim.run("backup", str(src), "--name", "agent", "--json", env=at(103))
    assert fired, f"no GET under {kind}/ reached the proxy"
    if kind == "index":  # big.bin's pack was repacked: its segment replaced by another
        assert pruned[0]["repacked"]["bytes"] > 2 * MiB and pruned[0]["segments_deleted"]
    assert res.code == 0, res.err
    trusted.ok("restore", res.json()["snapshot_id"], "--target", str(tmp_path / "out"))
    assert tree_state(tmp_path / "out") == tree_state(src)


# --- 2. copy: local -> S3 -> local, with a chain -----------------------------------------


def chain_of_three(cli: CLI, src: Path) -> list[tuple[str, dict[str, Any]]]:
    """A full and 2 incrementals (changes, additions, deletions): (id, tree) each."""
    make_workspace(src)
    (src / "blob.bin").write_bytes(random.Random(5).randbytes(2 * MiB))
    snaps = []
    for i in range(3):
        if i == 1:
            mutate_workspace(src)
            (src / "new.txt").write_text("added\n" * 1000)
        if i == 2:
            (src / "workspace" / "SOUL.md").unlink()
            shutil.rmtree(src / "state" / "cron")
            (src / "blob.bin").write_bytes(random.Random(6).randbytes(MiB))
        snap = cli.ok("backup", str(src), "--name", "agent", "--json", env=at(i)).json()
        assert snap["kind"] == ("full" if i == 0 else "incremental")
        snaps.append((snap["snapshot_id"], tree_state(src)))
    return snaps


def test_copy_to_s3_and_back_restores_every_snapshot(seaweed: Server, prefix: str, tmp_path: Path):
    local = no_aws(CLI(tmp_path / "local", tmp_path / "cache-local"))
    local.init()
    snaps = chain_of_three(local, tmp_path / "agent")

    url = f"s3://{BUCKET}/{prefix}"
    offsite = s3_cli(tmp_path, seaweed.endpoint, url, cache="cache-s3")
    offsite.env["CLEANCUT_PASSWORD"] = PASSWORD_S3
    offsite.ok("init", *kdf())
    to_s3 = s3_env(seaweed.endpoint) | {"CLEANCUT_TO_PASSWORD": PASSWORD_S3}

    first = local.ok("copy", "--from", str(local.repo), "--to", url, "--json", env=to_s3).json()
    assert first["snapshots_copied"] == 3 and first["bytes_uploaded"] > 2 * MiB
    assert [c["seq"] for c in first["copied"]] == [0, 1, 2]  # ancestors first
    in_s3 = {c["source_id"]: c["dest_id"] for c in first["copied"]}
    for i, (snap_id, state) in enumerate(snaps):
        target = tmp_path / f"s3-{i}"
        offsite.ok("restore", in_s3[snap_id], "--target", str(target))
        assert tree_state(target) == state, f"snapshot {i} differs after the copy to S3"
    offsite.ok("check", "--read-data")

    again = local.ok("copy", "--to", url, "--json", env=to_s3).json()
    assert again["snapshots_copied"] == 0 and again["snapshots_skipped"] == 3
    assert again["blobs_transferred"] == 0 and again["bytes_uploaded"] == 0
    text = local.ok("copy", "--to", url, env=to_s3).out
    assert "0 snapshots copied" in text and "0 bytes transferred" in text

    back = no_aws(CLI(tmp_path / "back", tmp_path / "cache-back"))
    back.env["CLEANCUT_PASSWORD"] = PASSWORD_BACK
    back.init()
    home = offsite.ok(
        "copy",
        *("--from", url, "--to", str(back.repo), "--json"),
        env={"CLEANCUT_TO_PASSWORD": PASSWORD_BACK},
    ).json()
    assert home["snapshots_copied"] == 3
    at_home = {c["source_id"]: c["dest_id"] for c in home["copied"]}
    for i, (snap_id, state) in enumerate(snaps):
        target = tmp_path / f"back-{i}"
        back.ok("restore", at_home[in_s3[snap_id]], "--target", str(target))
        assert tree_state(target) == state, f"snapshot {i} differs after the copy back"
    back.ok("check", "--read-data")
    # Three repositories, three sets of keys: every copy has its own snapshot ids.
    assert first["destination_repository"] == home["source_repository"]
    assert len({first["source_repository"], *in_s3.values(), *at_home.values()}) == 7


# --- 3. bandwidth caps -------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the S3 port that timestamps every chunk it passes on.

    It sees what the link would see: when bytes actually cross, in each direction,
    whatever cleancut's own accounting says."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.sent: list[tuple[float, int]] = []  # client -> server (uploads)
        self.received: list[tuple[float, int]] = []  # server -> client (downloads)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b, log in ((client, server, self.sent), (server, client, self.received)):
                threading.Thread(target=self._pump, args=(a, b, log), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, log: list[tuple[float, int]]) -> None:
        try:
            while data := a.recv(1 << 16):
                with self.lock:
                    log.append((time.monotonic(), len(data)))
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def rate(self, direction: str, start: float, end: float) -> tuple[int, float]:
        """Bytes that crossed in one direction within [start, end], and the Mbit/s from the
        first of them to the last."""
        with self.lock:
            log = [(t, n) for t, n in getattr(self, direction) if start <= t <= end]
        total = sum(n for _, n in log)
        return total, total * 8 / 1e6 / max(log[-1][0] - log[0][0], 1e-3)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def relay(seaweed: Server) -> Iterator[Relay]:
    relay = Relay(seaweed.port)
    yield relay
    relay.close()


def fresh_blob(src: Path, size: int) -> Path:
    """Incompressible bytes never seen before (nothing to deduplicate against)."""
    src.mkdir(exist_ok=True)
    for old in src.iterdir():
        old.unlink()
    (src / "blob.bin").write_bytes(os.urandom(size))
    return src


def within(rate: float, cap: float, what: str) -> None:
    assert 0.9 * cap <= rate <= 1.1 * cap, f"{what}: {rate:.1f} Mbit/s against a cap of {cap:g}"


def on_the_wire(rate: float, cap: float, what: str) -> None:
    """The link's view: from the first byte of the command to its last, never above the cap
    by more than 10 % (below it by the command's fixed costs: opening, listing, the index)."""
    assert rate <= 1.1 * cap, f"{what}, on the wire: {rate:.1f} Mbit/s against a cap of {cap:g}"


def test_limit_upload_and_download_hold_on_s3(relay: Relay, prefix: str, tmp_path: Path):
    cli = s3_cli(tmp_path, relay.endpoint, f"s3://{BUCKET}/{prefix}")
    cli.ok("init", *kdf(), "--pack-size", "4MiB")
    src = fresh_blob(tmp_path / "src", 24 * MiB)

    start = time.monotonic()
    snap = cli.ok("backup", str(src), "--limit-upload", "80", "--json").json()
    end = time.monotonic()
    assert snap["bytes_added"] >= 24 * MiB
    within(snap["bytes_added"] * 8 / 1e6 / snap["duration_s"], 80, "backup, by its own report")
    sent, wire = relay.rate("sent", start, end)
    assert sent >= 24 * MiB
    on_the_wire(wire, 80, "backup")

    # A restore with --limit-download 80: the rate its bytes cross the link at, from the
    # first to the last (start-up and the listing around them are not the transfer).
    start = time.monotonic()
    cli.ok("restore", "latest", "--target", str(tmp_path / "slow"), "--limit-download", "80")
    received, wire = relay.rate("received", start, time.monotonic())
    assert received >= 24 * MiB
    within(wire, 80, "restore, on the wire")
    assert tree_state(tmp_path / "slow") == tree_state(src)


def test_limit_download_holds_on_the_wire(relay: Relay, prefix: str, tmp_path: Path):
    cli = s3_cli(tmp_path, relay.endpoint, f"s3://{BUCKET}/{prefix}")
    cli.ok("init", *kdf(), "--pack-size", "4MiB")
    src = fresh_blob(tmp_path / "src", 24 * MiB)
    cli.ok("backup", str(src), "--limit-upload", "unlimited")
    start = time.monotonic()
    cli.ok("restore", "latest", "--target", str(tmp_path / "out"), "--limit-download", "80")
    received, wire = relay.rate("received", start, time.monotonic())
    assert received >= 24 * MiB
    on_the_wire(wire, 80, "restore")


def test_the_profile_caps_remote_uploads_only(seaweed: Server, prefix: str, tmp_path: Path):
    remote = s3_cli(tmp_path, seaweed.endpoint, f"s3://{BUCKET}/{prefix}")
    remote.ok("init", *kdf(), "--pack-size", "4MiB", "--profile", "conservative")
    snap = remote.ok("backup", str(fresh_blob(tmp_path / "a", 24 * MiB)), "--json").json()
    within(snap["bytes_added"] * 8 / 1e6 / snap["duration_s"], 50, "conservative, s3://")

    local = no_aws(CLI(tmp_path / "local", tmp_path / "cache-local"))
    local.ok("init", *kdf(), "--pack-size", "4MiB", "--profile", "conservative")
    snap = local.ok("backup", str(fresh_blob(tmp_path / "b", 24 * MiB)), "--json").json()
    assert snap["bytes_added"] * 8 / 1e6 / snap["duration_s"] > 2 * 50  # not capped


def test_copy_to_s3_respects_the_upload_cap(seaweed: Server, prefix: str, tmp_path: Path):
    """Replication is the traffic the cap is for: an agent host's uplink to the offsite copy."""
    local = no_aws(CLI(tmp_path / "local", tmp_path / "cache-local"))
    local.init()
    local.ok("backup", str(fresh_blob(tmp_path / "src", 8 * MiB)))
    url = f"s3://{BUCKET}/{prefix}"
    s3_cli(tmp_path, seaweed.endpoint, url, cache="cache-s3").ok(
        "init", *kdf(), "--pack-size", "4MiB"
    )
    env = s3_env(seaweed.endpoint) | {"CLEANCUT_TO_PASSWORD": PASSWORD}
    copied = local.ok("copy", "--to", url, "--json", "--limit-upload", "16", env=env).json()
    assert copied["bytes_uploaded"] >= 8 * MiB
    within(copied["bytes_uploaded"] * 8 / 1e6 / copied["duration_s"], 16, "copy to s3://")


def test_scheduled_replication_respects_the_profile_cap(
    seaweed: Server, prefix: str, tmp_path: Path
):
    """`tick` copying to an offsite repository whose profile caps uploads at 50 Mbit/s."""
    url = f"s3://{BUCKET}/{prefix}"
    offsite = s3_cli(tmp_path, seaweed.endpoint, url, cache="cache-s3")
    offsite.env["CLEANCUT_PASSWORD"] = PASSWORD_S3
    offsite.ok("init", *kdf(), "--pack-size", "4MiB", "--profile", "conservative")
    (tmp_path / "local.pw").write_text(PASSWORD + "\n")
    (tmp_path / "offsite.pw").write_text(PASSWORD_S3 + "\n")
    local = no_aws(CLI(tmp_path / "local", tmp_path / "cache-local"))
    local.init()
    src = fresh_blob(tmp_path / "agent", 16 * MiB)
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'repository = "{local.repo}"\npassword_file = "local.pw"\n'
        f'[sources.agent]\npath = "{src}"\n'
        f'[replication]\nto = "{url}"\npassword_file = "offsite.pw"\n'
    )
    env = s3_env(seaweed.endpoint) | {"CLEANCUT_CONFIG": str(config)}
    out = local.ok("tick", env=env).out
    found = re.search(
        r"copy ok: 1 snapshot\(s\) copied to \S+, (\d+) bytes uploaded in ([\d.]+)s", out
    )
    assert found, out
    uploaded, seconds = int(found.group(1)), float(found.group(2))
    assert uploaded >= 16 * MiB
    within(uploaded * 8 / 1e6 / seconds, 50, "tick's copy to s3://")


# --- 4. append-only agent hosts ----------------------------------------------------------


class NoDeleteProxy(FaultProxy):
    """The S3 endpoint as an agent host's credentials see it under a bucket policy that
    grants s3:PutObject, s3:GetObject and s3:ListBucket but not s3:DeleteObject.

    SeaweedFS cannot express that: its identities' actions authorise deletes with
    `Write` (PUT and DELETE are the same action), and a bucket policy's Deny does not
    bind the fixture's one (Admin) identity, which is the only one tests/s3server.py
    configures. So the refusal is answered here, in AWS's own form: DeleteObjects
    (which obstore uses for every delete) answers 200 with an AccessDenied error for
    each key, and a plain DELETE answers 403 AccessDenied. Everything else goes
    through to the real server."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        base: Any = self.httpd.RequestHandlerClass
        proxy = self
        self.refused: list[str] = []
        self.puts: list[tuple[str, bool]] = []  # (path, sent with If-None-Match)

        class Handler(base):
            def do_PUT(self) -> None:
                with proxy.lock:
                    proxy.puts.append((self.path, "If-None-Match" in self.headers))
                return base.do_PUT(self)

            def do_POST(self) -> None:
                if not re.search(r"\?delete(=|&|$)", self.path):
                    return base.do_POST(self)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                keys = [k.decode() for k in re.findall(rb"<Key>([^<]*)</Key>", body)]
                with proxy.lock:
                    proxy.requests.append(("POST", self.path))
                    proxy.refused.extend(keys)
                errors = "".join(
                    f"<Error><Key>{k}</Key><Code>AccessDenied</Code>"
                    "<Message>Access Denied</Message></Error>"
                    for k in keys
                )
                self._answer(200, f'<DeleteResult xmlns="{S3_NS}">{errors}</DeleteResult>')

            def do_DELETE(self) -> None:
                with proxy.lock:
                    proxy.requests.append(("DELETE", self.path))
                    proxy.refused.append(self.path)
                self._answer(403, "<Error><Code>AccessDenied</Code></Error>")

            def _answer(self, status: int, xml: str) -> None:
                payload = ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd.RequestHandlerClass = Handler


S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


@pytest.fixture
def no_delete(seaweed: Server) -> Iterator[NoDeleteProxy]:
    proxy = NoDeleteProxy(seaweed.port)
    yield proxy
    proxy.close()


def three_backups(cli: CLI, src: Path, *args: str) -> list[str]:
    """Two chains (a full at 0 h, an incremental at 1 h, a full at 100 h): old enough that
    a trusted host's `forget --keep-last 1` forgets two snapshots."""
    make_workspace(src)
    ids = []
    for hours, full in ((0, True), (1, False), (100, True)):
        mutate_workspace(src, seed=hours)
        (src / f"data-{hours}.bin").write_bytes(os.urandom(MiB))
        flags = ["--full"] if full else []
        snap = cli.ok("backup", str(src), "--name", "agent", "--json", *flags, *args, env=at(hours))
        ids.append(snap.json()["snapshot_id"])
    return ids


def test_append_only_on_s3_never_deletes(
    seaweed: Server, no_delete: NoDeleteProxy, prefix: str, tmp_path: Path
):
    url = f"s3://{BUCKET}/{prefix}"
    trusted = s3_cli(tmp_path, seaweed.endpoint, url, cache="trusted")
    trusted.init()
    # The agent host goes through the proxy, so every request it makes is counted.
    agent = s3_cli(tmp_path, no_delete.endpoint, url, cache="agent")
    three_backups(agent, tmp_path / "agent", "--append-only")
    config = tmp_path / "agent.toml"
    config.write_text("append_only = true\n")
    mutate_workspace(tmp_path / "agent", seed=9)
    args = ("backup", str(tmp_path / "agent"), "--name", "agent", "--config", str(config))
    agent.ok(*args, env=at(100.5))
    assert no_delete.count("DELETE") == no_delete.count("POST") == 0  # not even attempted
    # Every write is a conditional create: a bucket policy may demand If-None-Match.
    assert no_delete.puts and all(conditional for _, conditional in no_delete.puts)

    before = bucket_objects(seaweed, prefix)
    for args in (
        ("forget", "--keep-last", "1", "--append-only"),
        ("prune", "--append-only"),
        ("forget", "--keep-last", "1", "--prune", "--config", str(config)),
        ("prune", "--safety-margin", "1s", "--config", str(config)),
    ):
        res = agent.run(*args, env=at(101))
        assert res.code == 16, (args, res.code, res.err)
        assert "is open append-only" in res.err
        assert_no_traceback(res)
    assert bucket_objects(seaweed, prefix) == before
    assert no_delete.refused == []  # refused by cleancut before the bucket had to
    assert len(agent.ok("snapshots", "--json", "--append-only").json()) == 4

    # From the trusted host, the same commands work.
    forgot = trusted.ok("forget", "--keep-last", "1", "--prune", "--json", env=at(102)).json()
    assert len(forgot["forgotten"]) == 2
    trusted.ok("check", "--read-data")


def test_credentials_without_delete_lose_nothing(
    seaweed: Server, no_delete: NoDeleteProxy, prefix: str, tmp_path: Path
):
    """What bucket permissions alone do: a host without s3:DeleteObject (and without
    --append-only) backs up fine; its forget and prune fail in one line; nothing is lost."""
    url = f"s3://{BUCKET}/{prefix}"
    trusted = s3_cli(tmp_path, seaweed.endpoint, url, cache="trusted")
    trusted.init()
    agent = s3_cli(tmp_path, no_delete.endpoint, url, cache="agent")
    ids = three_backups(agent, tmp_path / "agent")  # backups never delete: unaffected
    assert no_delete.refused == []
    before = bucket_objects(seaweed, prefix)

    for args in (("forget", "--keep-last", "1"), ("prune", "--safety-margin", "1s")):
        res = agent.run(*args, env=at(101))
        assert res.code != 0, (args, res.out)
        assert_no_traceback(res)
        assert re.search(r"cannot delete \S+: access denied|access denied while trying", res.err)
        after = bucket_objects(seaweed, prefix)
        assert set(before) <= set(after), set(before) - set(after)  # nothing went
        before = after
    assert no_delete.refused  # the bucket, not cleancut, refused
    assert [s["id"] for s in trusted.ok("snapshots", "--json").json()] == ids

    # The refused prune could not remove its own lock either: the trusted host clears
    # it (here it has expired; a live one needs `unlock --force`), then prunes.
    assert "locks/prune" in bucket_objects(seaweed, prefix)
    trusted.ok("unlock", env=at(103))
    forgot = trusted.ok("forget", "--keep-last", "1", "--prune", "--json", env=at(103)).json()
    assert len(forgot["forgotten"]) == 2
    trusted.ok("restore", ids[-1], "--target", str(tmp_path / "out"))
    trusted.ok("check", "--read-data")
