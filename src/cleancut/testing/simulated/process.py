"""The agent as a process: serve the control socket, build the tree, run until SIGTERM.

Journal mode (`AgentOptions.journal`, see journalio.py) opens the journal
before anything touches the tree, and may start on an existing tree: a restart
on the same root and journal continues the journal's sequence (and the
oracle's), and a restored tree gets a fresh journal that starts after the
sequence number it was restored at (`journal_start_after`). The default mode
keeps requiring a fresh root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from cleancut.journal.frame import JournalError
from cleancut.sdk.journal_writer import Journal
from cleancut.sdk.ledger import Ledger
from cleancut.sdk.server import ControlServer

from .agent import AgentOptions, SimAgent
from .journalio import JournalLedger, JournalWrites
from .layout import Layout
from .oracle import OracleWriter
from .snapshot import load_snapshot


class StartError(Exception):
    """The agent cannot start: its root is not fresh, the oracle would land inside it, or
    another process serves the socket."""


def run_agent(opts: AgentOptions, out: TextIO = sys.stdout) -> int:
    """Run the simulated agent until SIGTERM or SIGINT; prints `ready <pid>` once serving.

    0 after a clean stop, 1 if a worker thread died.
    """
    if opts.journal is not None:
        return _run_journaled(opts, out)
    layout = Layout(opts.root)
    if layout.state.exists():
        raise StartError(f"{layout.state} already exists; give the agent a fresh --root")
    if opts.oracle.resolve().is_relative_to(opts.root.resolve()):
        raise StartError(f"--oracle {opts.oracle} is inside --root: a backup would copy it; "
                         "put it outside")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    layout.make_dirs()
    ledger = Ledger(layout.ledger)
    server = ControlServer(opts.socket, agent="simagent", ledger=ledger,
                           flush_interval=opts.flush_interval or None)
    try:
        server.start()
    except RuntimeError as exc:
        ledger.close()
        raise StartError(str(exc)) from None
    oracle = OracleWriter(opts.oracle, root=str(opts.root.resolve()), seed=opts.seed,
                          started=time.time())
    agent = SimAgent(opts, server, ledger, oracle)
    failed = False
    try:
        server.on_flush(agent.flush)
        with server.turn():  # even the first files are a unit of work
            agent.create_tree()
        agent.start()
        failed, elapsed = _serve_until_stopped(agent, stop, out)
    finally:
        server.stop()  # first: a turn waiting on a quiesce must not hold the shutdown up
        agent.shutdown()
        ledger.close()
        oracle.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped turns={agent.turns_done} writes={agent.writes_done} "
          f"seconds={elapsed:.2f}", file=out, flush=True)
    return 1 if failed else 0


def default_index(journal: Path) -> Path:
    """Where journal mode keeps the memory index: beside the journal, outside the tree."""
    return journal.parent / f"{journal.name}-index" / "main.sqlite"


def _run_journaled(opts: AgentOptions, out: TextIO) -> int:
    """run_agent in journal mode: every write of the tree goes through the journal."""
    assert opts.journal is not None
    root = opts.root.resolve()
    opts.index = opts.index or default_index(opts.journal)
    for flag, path in (("--oracle", opts.oracle), ("--journal", opts.journal),
                       ("--index", opts.index)):
        if path.resolve().is_relative_to(root):
            raise StartError(f"{flag} {path} is inside --root: a backup would copy it; "
                             "put it outside")
    opts.root.mkdir(parents=True, exist_ok=True)  # the tree's top itself is not journaled
    try:
        journal = Journal(opts.journal, opts.root, start_after=opts.journal_start_after)
    except (JournalError, ValueError) as exc:
        raise StartError(str(exc)) from None
    layout = Layout(opts.root)
    fresh = not layout.state.exists()
    io = JournalWrites(journal, layout)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGUSR1] = _stop_at_boundaries(journal, stop)
    server: ControlServer | None = None
    ledger: JournalLedger | None = None
    oracle: OracleWriter | None = None
    agent: SimAgent | None = None
    failed = False
    elapsed = 0.0
    try:
        io.make_dirs(layout)
        ledger = JournalLedger(layout.ledger, journal, layout.rel(layout.ledger))
        server = ControlServer(opts.socket, agent="simagent", ledger=ledger,
                               flush_interval=opts.flush_interval or None,
                               journal_seq=lambda: journal.last_seq)
        try:
            server.start()
        except RuntimeError as exc:
            server = None
            raise StartError(str(exc)) from None
        header: dict[str, Any] = {"root": str(root), "seed": opts.seed, "started": time.time(),
                  "journal": str(opts.journal.resolve()), "index": str(opts.index.resolve())}
        rng_seed = None
        if fresh:
            oracle = OracleWriter(opts.oracle, **header)
        elif opts.oracle.exists():  # a restart: the oracle goes on where it stopped
            oracle = OracleWriter(opts.oracle, resume=True, **header)
        else:  # a restored tree: number after the highest write it holds
            oracle = OracleWriter(opts.oracle, after=_highest_wseq(opts.root), **header)
        if not fresh:
            rng_seed = f"{opts.seed}:{journal.last_seq}"
            for suffix in ("", "-wal", "-shm"):  # the index is rebuilt from the notes
                Path(f"{opts.index}{suffix}").unlink(missing_ok=True)
        opts.index.parent.mkdir(parents=True, exist_ok=True)
        agent = SimAgent(opts, server, ledger, oracle, io=io, rng_seed=rng_seed)
        server.on_flush(agent.flush)
        with server.turn():  # even the first files are a unit of work
            if fresh:
                agent.create_tree()
            else:
                agent.load_tree()
        agent.start()
        failed, elapsed = _serve_until_stopped(agent, stop, out)
    finally:
        if server is not None:
            server.stop()
        if agent is not None:
            agent.shutdown()
        if ledger is not None:
            ledger.close()  # writes what the SDK held: before the journal closes
        journal.close()
        if oracle is not None:
            oracle.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert agent is not None
    print(f"stopped turns={agent.turns_done} writes={agent.writes_done} "
          f"seconds={elapsed:.2f} journal_seq={journal.last_seq}", file=out, flush=True)
    return 1 if failed else 0


def _stop_at_boundaries(journal: Journal, stop: threading.Event) -> Any:
    """SIGUSR1 stops the process (every thread) at the next journal record boundary.

    A SIGSTOP sent from outside lands wherever the agent is, most often inside a
    record (durable, not yet applied), so a test that wants the exact state at a
    record would have to retry until chance puts the stop between two. Instead,
    on SIGUSR1 a thread takes the journal's lock (an empty transaction: no record
    is in progress on any thread, and none can start) and stops the process;
    SIGCONT lets it go on, the transaction ends with nothing written. Returns the
    previous handler.
    """
    wanted = threading.Event()

    def stopper() -> None:
        while not stop.is_set():
            if not wanted.wait(0.5):
                continue
            wanted.clear()
            with contextlib.suppress(JournalError), journal.transaction():
                os.kill(os.getpid(), signal.SIGSTOP)

    threading.Thread(target=stopper, name="boundary-stop", daemon=True).start()
    return signal.signal(signal.SIGUSR1, lambda *_: wanted.set())


def _highest_wseq(root: Path) -> int:
    snap = load_snapshot(root, quiesced=False, expect_index=False)
    seqs = [v for v in snap.versions.values() if v is not None]
    for found in snap.line_seqs.values():
        seqs += found
    return max(seqs, default=0)


def _serve_until_stopped(
    agent: SimAgent, stop: threading.Event, out: TextIO
) -> tuple[bool, float]:
    """Say ready, then watch the workers until asked to stop; (a worker died, seconds run)."""
    started = time.monotonic()
    print(f"ready {os.getpid()}", file=out, flush=True)
    failed = False
    while not stop.wait(0.5):
        if not all(t.is_alive() for t in [*agent.threads, agent.indexer.thread]):
            print("simagent: a worker thread died; stopping", file=sys.stderr)
            failed = True
            break
    return failed, time.monotonic() - started
