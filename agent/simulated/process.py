"""The agent as a process: serve the control socket, build the tree, run until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TextIO

from cleancut.agent.ledger import Ledger
from cleancut.agent.sdk import ControlServer

from .agent import AgentOptions, SimAgent
from .layout import Layout
from .oracle import OracleWriter


class StartError(Exception):
    """The agent cannot start: its root is not fresh, the oracle would land inside it, or
    another process serves the socket."""


def run_agent(opts: AgentOptions, out: TextIO = sys.stdout) -> int:
    """Run the simulated agent until SIGTERM or SIGINT; prints `ready <pid>` once serving.

    0 after a clean stop, 1 if a worker thread died.
    """
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
        started = time.monotonic()
        print(f"ready {os.getpid()}", file=out, flush=True)
        while not stop.wait(0.5):
            if not all(t.is_alive() for t in [*agent.threads, agent.indexer.thread]):
                print("simagent: a worker thread died; stopping", file=sys.stderr)
                failed = True
                break
        elapsed = time.monotonic() - started
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
