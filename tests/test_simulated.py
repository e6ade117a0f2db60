"""The simulated agent and its checker: clean copies pass, every kind of fault is caught.

One agent process runs flat out for the whole module (async sends, one that
never settles, frequent reindexes). Copies of it are taken the three ways a
backup can: quiesced through the control protocol (the real `quiesced()`
session), frozen with SIGSTOP (the real `freeze()`), and naively file by file.
The faults are made by hand from a clean quiesced copy, one per test.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cleancut.errors import QuiesceMissed
from cleancut.hot.freeze import freeze
from cleancut.hot.session import SessionReport, quiesced
from cleancut.testing.simulated.bulk import churn, make_bulk, total_size
from cleancut.testing.simulated.checker import check_workspace
from cleancut.testing.simulated.layout import Layout
from cleancut.testing.simulated.memindex import SCHEMA, MemoryIndex, connect
from cleancut.testing.simulated.naive import naive_copy
from cleancut.testing.simulated.oracle import OracleWriter


@dataclass
class Running:
    proc: subprocess.Popen
    root: Path
    socket: Path
    oracle: Path


@dataclass
class Copy:
    root: Path
    inflight: frozenset[str]


def _start(base: Path, *flags: str) -> Running:
    root, oracle = base / "agent", base / "oracle.jsonl"
    sock = Path(tempfile.mkdtemp(prefix="sim-", dir="/tmp")) / "s.sock"  # short: AF_UNIX limit
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleancut.testing.simulated", "run", "--root", str(root),
         "--socket", str(sock), "--oracle", str(oracle), *flags],
        stdout=subprocess.PIPE, text=True, start_new_session=True,  # freeze() needs its own group
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.split() == ["ready", str(proc.pid)], line
    return Running(proc, root, sock, oracle)


def _stop(agent: Running) -> str:
    agent.proc.send_signal(signal.SIGTERM)
    out, _ = agent.proc.communicate(timeout=20)
    shutil.rmtree(agent.socket.parent, ignore_errors=True)
    assert agent.proc.returncode == 0, out
    return out


def _quiesced_copy(agent: Running, dst: Path) -> Copy:
    report = SessionReport()
    quiesced(f"unix:{agent.socket}", quiesce_timeout=10, horizon=1.0,
             capture=lambda: shutil.copytree(agent.root, dst), report=report, lease=5)
    return Copy(dst, frozenset(a["key"] for a in report.inflight))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = _start(tmp_path_factory.mktemp("simagent"), "--seed", "11",
                     "--async-fraction", "0.25", "--stuck", "1", "--reindex-every", "3")
    yield running
    out = _stop(running)
    assert out.startswith("stopped turns="), out


@pytest.fixture(scope="module")
def copies(agent: Running, tmp_path_factory: pytest.TempPathFactory) -> tuple[Copy, Copy]:
    """Two quiesced copies, the second a second later than the first."""
    base = tmp_path_factory.mktemp("copies")
    time.sleep(2.0)
    early = _quiesced_copy(agent, base / "early")
    time.sleep(1.0)
    late = _quiesced_copy(agent, base / "late")
    return early, late


@pytest.fixture
def faulty(copies: tuple[Copy, Copy], tmp_path: Path) -> Copy:
    """A private copy of the early clean copy, to break."""
    early = copies[0]
    return Copy(Path(shutil.copytree(early.root, tmp_path / "copy")), early.inflight)


def _check(agent: Running, copy: Copy, oracle: bool = True) -> list[str]:
    return check_workspace(copy.root, agent.oracle if oracle else None, copy.inflight)


def _has(found: list[str], *needles: str) -> bool:
    return any(all(n in line for n in needles) for line in found)


def _transcripts(root: Path) -> list[Path]:
    return sorted(p for p in Layout(root).sessions_dir.glob("*.jsonl"))


def _ledger(root: Path) -> list[dict]:
    return [json.loads(line) for line in Layout(root).ledger.read_text().splitlines()]


# --- the agent serves, clean copies pass ---------------------------------------------


def test_agent_serves_the_control_socket(agent: Running) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(agent.socket))
        sock.sendall(b'{"id":1,"op":"hello","protocol":1}\n')
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is True and reply["id"] == 1
    assert reply["agent"] == "simagent" and "quiesce" in reply["capabilities"]


def test_quiesced_copies_are_consistent(agent: Running, copies: tuple[Copy, Copy]) -> None:
    for copy in copies:
        assert len(copy.inflight) >= 1  # the stuck send: recorded by the horizon, not settled
        assert _check(agent, copy) == []
        assert _check(agent, copy, oracle=False) == []
    # ... and only because the backup recorded what was in flight:
    found = check_workspace(copies[0].root, agent.oracle, frozenset())
    assert _has(found, "still started in a quiesced snapshot")


def test_frozen_copies_are_crash_consistent(agent: Running, tmp_path: Path) -> None:
    for n in range(2):
        dst = tmp_path / f"frozen{n}"
        with freeze(agent.proc.pid, watchdog_s=30):
            shutil.copytree(agent.root, dst)
        assert check_workspace(dst, agent.oracle, quiesced=False) == []
        time.sleep(0.2)


def test_naive_copies_get_caught(agent: Running, tmp_path: Path) -> None:
    caught = []
    for n in range(10):
        dst = tmp_path / f"naive{n}"
        naive_copy(agent.root, dst)
        found = check_workspace(dst, agent.oracle, quiesced=False)
        caught.append(bool(found))
        if found:
            break
    assert any(caught), "ten naive copies of a busy agent all looked consistent"


# --- faults, each made from a clean quiesced copy ----------------------------------------


@pytest.mark.parametrize("tail", [b'{"type":"message","id":"ab', b"\x00" * 512])
def test_torn_or_nul_padded_jsonl_tail(agent: Running, faulty: Copy, tail: bytes) -> None:
    transcript = _transcripts(faulty.root)[0]
    with open(transcript, "ab") as f:
        f.write(tail)
    found = _check(agent, faulty)
    assert _has(found, transcript.name, "NUL" if tail[0] == 0 else "torn tail"), found


def test_zero_byte_sessions_json(agent: Running, faulty: Copy) -> None:
    Layout(faulty.root).sessions_index.write_bytes(b"")
    assert _has(_check(agent, faulty), "sessions.json: empty (0 bytes)")


def test_leftover_temp_lock_and_acknowledgement_files(agent: Running, faulty: Copy) -> None:
    lay = Layout(faulty.root)
    (lay.sessions_dir / "sessions.json.4242.tmp").write_text("{}")
    (lay.auth_profiles.parent / "auth-profiles.json.lock").write_text('{"pid": 4242}')
    (lay.queue_dir / "0b0e7a9e-1f7e-4a43-9d1f-6d6f2b1d7a11.delivered").write_text("{}")
    found = _check(agent, faulty)
    for kind in ("temp", "lock", "acknowledgement"):
        assert _has(found, f"{kind} file left behind"), (kind, found)
    assert check_workspace(faulty.root, agent.oracle, faulty.inflight, quiesced=False) == []


def test_queue_file_whose_delivery_has_a_receipt(agent: Running, faulty: Copy) -> None:
    done = next(e for e in _ledger(faulty.root) if e["state"] == "intent"
                and e["kind"] == "delivery")
    qid = done["queueId"]
    Layout(faulty.root).queue_file(qid).write_text(json.dumps(
        {"id": qid, "idempotencyKey": done["key"], "payload": {"text": "hi"}, "wseq": 1}))
    assert _has(_check(agent, faulty), qid, "would send it twice")


def test_cron_job_left_running_or_behind_its_run_log(agent: Running, faulty: Copy) -> None:
    jobs_path = Layout(faulty.root).cron_jobs
    doc = json.loads(jobs_path.read_text())
    ran = [j for j in doc["jobs"] if j["state"]["lastRunAtMs"] is not None]
    assert ran, "no cron run in three seconds"
    ran[0]["state"]["runningAtMs"] = ran[0]["state"]["lastRunAtMs"] + 5
    ran[0]["state"]["lastRunAtMs"] -= 1000
    jobs_path.write_text(json.dumps(doc))
    found = _check(agent, faulty)
    assert _has(found, ran[0]["id"], "marked running")
    assert _has(found, ran[0]["id"], "lastRunAtMs", "newest run")


def test_ledger_receipt_without_intent(agent: Running, faulty: Copy) -> None:
    lines = _ledger(faulty.root)
    key = next(e["key"] for e in lines if e["state"] == "receipt")
    kept = [e for e in lines if not (e["key"] == key and e["state"] in ("intent", "started"))]
    Layout(faulty.root).ledger.write_text("".join(json.dumps(e) + "\n" for e in kept))
    assert _has(_check(agent, faulty), key, "receipt without its intent")


def test_tool_call_without_result(agent: Running, faulty: Copy) -> None:
    for transcript in _transcripts(faulty.root):
        lines = transcript.read_text().splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if '"role":"toolResult"' in line]
        if hits:
            call_id = json.loads(lines[hits[0]])["message"]["toolCallId"]
            transcript.write_text("".join(lines[: hits[0]] + lines[hits[0] + 1 :]))
            break
    else:
        pytest.fail("no tool result in any transcript")
    assert _has(_check(agent, faulty), f"tool call {call_id!r} has no result")


def test_database_with_another_moments_wal(faulty: Copy, tmp_path: Path) -> None:
    """Main file from t1, -wal from t2 with a checkpoint in between: two moments' pages."""
    lay = Layout(faulty.root)
    scratch = Layout(tmp_path / "scratch")
    shutil.copytree(faulty.root, scratch.root)
    index = MemoryIndex(scratch, OracleWriter(tmp_path / "scratch-oracle"), threading.Lock())
    index.con = connect(scratch.memory_db)
    index.con.execute("PRAGMA wal_autocheckpoint=0")
    index.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index.generation = index.con.execute(
        "SELECT value FROM meta WHERE key='generation'").fetchone()[0]
    main_t1 = scratch.memory_db.read_bytes()  # t1: everything is in the main file
    edits = [("AGENTS.md", 9_000_001), ("SOUL.md", 9_000_002)]
    for n, (name, version) in enumerate(edits):
        body = f"# {name}\n\n" + "a fresh line of notes\n" * 300 + f"\n<!-- wseq {version} -->\n"
        index.commit(index.con, [(f"workspace/{name}", body.encode())], full=False)
        if n == 0:
            index.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the first edit: main only
    wal_t2 = Path(f"{scratch.memory_db}-wal").read_bytes()  # t2: only the second edit
    assert wal_t2
    for suffix in ("-wal", "-shm"):
        Path(f"{lay.memory_db}{suffix}").unlink(missing_ok=True)
    lay.memory_db.write_bytes(main_t1)
    Path(f"{lay.memory_db}-wal").write_bytes(wal_t2)
    found = check_workspace(faulty.root, None, faulty.inflight)
    assert _has(found, "state/memory/main.sqlite"), found
    index.close()


def test_copy_during_the_index_swap(agent: Running, faulty: Copy, tmp_path: Path) -> None:
    """A reindex's first rename done, not its second: the new main file without its -wal."""
    lay = Layout(faulty.root)
    index = MemoryIndex(lay, OracleWriter(tmp_path / "scratch-oracle"), threading.Lock())
    index.generation = 99
    new_db = tmp_path / "new.sqlite"
    builder = connect(new_db)
    builder.execute("PRAGMA wal_autocheckpoint=0")  # as the reindex builds it: pages in the -wal
    builder.executescript(SCHEMA)
    notes = lay.workspace_file("AGENTS.md")
    index.commit(builder, [(lay.rel(notes), notes.read_bytes())], full=True)
    new_main = new_db.read_bytes()
    builder.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{lay.memory_db}{suffix}").unlink(missing_ok=True)
    lay.memory_db.write_bytes(new_main)
    assert _has(check_workspace(faulty.root, None, faulty.inflight), "main.sqlite",
                "tables missing")
    # One instant of the agent does look like this: a frozen copy may show it.
    assert check_workspace(faulty.root, agent.oracle, faulty.inflight, quiesced=False) == []


def test_memory_index_ahead_of_memory_files(agent: Running, faulty: Copy) -> None:
    lay = Layout(faulty.root)
    con = sqlite3.connect(lay.memory_db)
    path, size = con.execute("SELECT path, size FROM files WHERE path LIKE 'workspace/memory/%' "
                             "ORDER BY size DESC").fetchone()
    con.close()
    note = faulty.root / path
    data = note.read_bytes()
    cut_at = data.rfind(b"\n", 0, size // 2) + 1
    assert 0 < cut_at < size
    note.write_bytes(data[:cut_at])  # the note goes back in time; its index row does not
    found = _check(agent, faulty)
    assert _has(found, path, "the index is ahead"), found
    assert _has(_check(agent, faulty, oracle=False), path, "the index is ahead")
    assert _has(found, "cut:", path)  # what was flushed to the note is gone from it


def test_file_from_a_later_moment_breaks_the_cut(agent: Running, copies: tuple[Copy, Copy],
                                                 faulty: Copy) -> None:
    late = Layout(copies[1].root)
    shutil.copyfile(late.sessions_index, Layout(faulty.root).sessions_index)
    found = _check(agent, faulty)
    assert _has(found, "cut:", "sessions.json version", "is in the copy but"), found


# --- an agent that never goes idle; bulk data ---------------------------------------------


def test_hanging_agent_misses_quiesce(tmp_path: Path) -> None:
    agent = _start(tmp_path, "--hang", "--turn-pause", "0.01")
    try:
        with pytest.raises(QuiesceMissed, match="timeout"):
            quiesced(f"unix:{agent.socket}", quiesce_timeout=0.3, horizon=0.1,
                     capture=lambda: None, report=SessionReport())
        assert agent.proc.poll() is None
    finally:
        _stop(agent)


def test_bulk_files_and_churn(tmp_path: Path) -> None:
    made = make_bulk(tmp_path, 3 << 20, 40, seed=5)
    assert len(made) == 40 and total_size(tmp_path) == 3 << 20
    assert len({p.read_bytes()[:4096] for p in made}) == 40  # distinct: no free dedup
    before = {p: p.read_bytes() for p in tmp_path.rglob("att-*.bin")}
    written = churn(tmp_path, 1 << 20, random.Random(3))
    after = {p: p.read_bytes() for p in tmp_path.rglob("att-*.bin")}
    assert written >= 1 << 20 and before != after
    changed = sum(len(d) for p, d in after.items() if before.get(p) != d)
    assert changed < 3 << 20  # churn touches a few files, not the whole set


def test_check_cli_exit_codes(agent: Running, copies: tuple[Copy, Copy], faulty: Copy) -> None:
    cli = [sys.executable, "-m", "cleancut.testing.simulated", "check"]
    keys = [f"--inflight-ok={k}" for k in copies[0].inflight]
    ok = subprocess.run([*cli, str(copies[0].root), "--oracle", str(agent.oracle), *keys],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == "consistent", ok.stdout
    Layout(faulty.root).sessions_index.write_bytes(b"")
    bad = subprocess.run([*cli, str(faulty.root), *keys], capture_output=True, text=True)
    assert bad.returncode == 1 and "sessions.json: empty" in bad.stdout
