"""A LangGraph agent, backed up hot by cleancut: a complete, runnable example.

    python docs/examples/langgraph_agent.py run --root /var/lib/payagent \\
        --socket /run/payagent/cleancut.sock --service /var/lib/bank --threads 4
    cleancut backup /var/lib/payagent --agent unix:/run/payagent/cleancut.sock

The agent pays people and remembers what it did. Each conversation thread runs
a small graph (model -> tools -> model) checkpointed in SQLite; the `pay` tool
calls an external payment service through the ledger (idempotency keys, so a
restored agent never pays twice); the `remember` tool writes a memory's record
into LangGraph's memory store (SqliteStore) and its vector into a sqlite-vec
index, in the same step; an `audit` node runs beside the tools in that step. A
payment above APPROVAL_LIMIT waits for a human at `interrupt()` (the audit's
write is then a pending write of the step); resume it with Command(resume="yes").

The model is langchain_core's GenericFakeChatModel (nothing leaves the
machine); the embedding is cleancut's deterministic hashed_embedding. Swap in
your model and embedding: the backup wiring stays the same.

On start the agent reconciles the payments a backup recorded in flight, by
asking the service about their idempotency keys (see `start`).

The workspace (ROOT): checkpoints.sqlite, store.sqlite (memory records),
memory.sqlite (their vectors), ledger.jsonl. The
payment service keeps its own files in --service (the outside world: not in
the backup).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.sqlite import SqliteStore
from langgraph.types import interrupt

from cleancut.sdk.effects import InFlight, Unanswered, once, reconcile
from cleancut.sdk.langgraph import BackupReady, effect_key
from cleancut.sdk.ledger import Ledger
from cleancut.sdk.server import ControlServer
from cleancut.sdk.vectorindex import VectorIndex, hashed_embedding

APPROVAL_LIMIT = 100
DIM = 64
KEEP_MESSAGES = 8


# --- the outside world: a payment service that takes idempotency keys ------------


class PaymentService:
    """A simulated payment provider, in its own directory (not in the agent's backup).

    It takes each idempotency key once (a second request with the key returns the
    first receipt), answers `lookup(key)`, and, like a real network, sometimes takes a
    payment without answering: every `silent_every`-th new payment raises Unanswered.
    """

    def __init__(self, directory: str | Path, silent_every: int = 0) -> None:
        self.path = Path(directory) / "payments.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.silent_every = silent_every
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._seen.setdefault(entry["key"], entry)

    def pay(self, key: str, amount: int) -> str:
        """Take a payment (every request is logged; a known key is not paid again)."""
        with self._lock:
            repeat = key in self._seen
            entry = self._seen.get(key) or {
                "key": key, "amount": amount,
                "receipt": "rcpt-" + hashlib.sha256(key.encode()).hexdigest()[:12]}
            with open(self.path, "a") as f:
                f.write(json.dumps({**entry, "repeat": repeat}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if repeat:
                return str(entry["receipt"])
            self._seen[key] = entry
            silent = self.silent_every and len(self._seen) % self.silent_every == 0
        if silent:
            raise Unanswered(f"payment {key}: no answer from the service")
        return str(entry["receipt"])

    def lookup(self, key: str) -> str | None:
        with self._lock:
            entry = self._seen.get(key)
        return str(entry["receipt"]) if entry else None

    def requests(self) -> int:
        """How many payment requests the service has had, repeats included."""
        if not self.path.exists():
            return 0
        return sum(1 for line in self.path.read_text().splitlines() if line.strip())


# --- the graph ------------------------------------------------------------------


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    audited: Annotated[int, operator.add]  # plans checked by the audit node


def _plan(amount: int) -> AIMessage:
    return AIMessage(content="", tool_calls=[
        {"name": "pay", "args": {"to": "bob", "amount": amount}, "id": "call_pay"},
        {"name": "remember", "args": {"text": f"paid bob {amount}"}, "id": "call_remember"},
    ])


@dataclass
class Agent:
    """Everything the graph's nodes use: the model, the service, the ledger, the index."""

    service: PaymentService
    ledger: Ledger
    store: SqliteStore  # the memory records (LangGraph's long-term memory store)
    index: VectorIndex  # their vectors, for recall by meaning
    after_index: Callable[[], None] | None = None  # a hook for tests: runs inside a step

    def __post_init__(self) -> None:
        # The fake models stand in for one LLM: a plan (tool calls) for a user message,
        # a short answer once the tools have run.
        # (a fresh message each time: add_messages merges messages that share an id)
        self.planner = GenericFakeChatModel(messages=(_plan(30) for _ in itertools.count()))
        self.big_planner = GenericFakeChatModel(messages=(_plan(500) for _ in itertools.count()))
        self.answerer = GenericFakeChatModel(
            messages=(AIMessage("done") for _ in itertools.count()))

    def model(self, state: State) -> dict[str, Any]:
        last = state["messages"][-1]
        if isinstance(last, HumanMessage):
            big = "large" in str(last.content)
            reply = (self.big_planner if big else self.planner).invoke(state["messages"])
            return {"messages": [reply]}
        reply = self.answerer.invoke(state["messages"])
        # The turn is over: keep the context window bounded, as agents do (the memory
        # store keeps what matters); every checkpoint stores the whole message list.
        old = [RemoveMessage(id=str(m.id)) for m in state["messages"][:-KEEP_MESSAGES]]
        return {"messages": [*old, reply]}

    def tools(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        replies: list[ToolMessage] = []
        for i, call in enumerate(last.tool_calls):
            if call["name"] == "pay":
                result = self.pay(int(call["args"]["amount"]), effect_key(f"pay{i}", config))
            else:
                result = self.remember(str(call["args"]["text"]), f"remember{i}", config)
            replies.append(ToolMessage(result, tool_call_id=str(call["id"])))
        return {"messages": replies}

    def remember(self, what: str, name: str, config: RunnableConfig) -> str:
        """A memory: its record in the store, its vector in the index, in the same step
        (the key is the step's, so a step that runs again rewrites the same memory)."""
        key = effect_key(name, config)
        thread = str(config["configurable"]["thread_id"])
        text = f"{thread}: {what}"
        self.index.add(key, text, {"thread": thread})
        if self.after_index is not None:
            self.after_index()
        self.store.put(("memories", thread), key, {"text": text})
        return "remembered"

    def pay(self, amount: int, key: str) -> str:
        if amount > APPROVAL_LIMIT and interrupt({"approve": amount}) != "yes":
            return "declined by the reviewer"
        try:
            receipt = once(self.ledger, key, "payment",
                           lambda: self.service.pay(key, amount), amount=amount)
        except (Unanswered, InFlight):
            return "sent; the service has not confirmed it yet"
        return f"paid: {receipt}"


def audit(state: State) -> dict[str, Any]:
    """Runs beside the tools, in the same super-step: while `tools` waits for a reviewer
    at interrupt(), this task's write is kept as a pending write of the step."""
    return {"audited": 1}


def route(state: State) -> list[str]:
    return ["tools", "audit"] if state["messages"][-1].tool_calls else [END]


def build(agent: Agent) -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("model", agent.model)
    graph.add_node("tools", agent.tools)
    graph.add_node("audit", audit)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", "audit", END])
    graph.add_edge("tools", "model")
    graph.add_edge("audit", "model")
    return graph


def thread_config(name: str) -> RunnableConfig:
    return {"configurable": {"thread_id": name}}


# --- starting, running ------------------------------------------------------------


@dataclass
class Opened:
    agent: Agent
    graph: Any  # BackupReady, or the bare compiled graph without --plain's adapter
    server: ControlServer | None
    settled: dict[str, str]


def start(root: Path, service_dir: Path, socket_path: Path | None, silent_every: int = 0,
          after_index: Callable[[], None] | None = None,
          checkpointer: BaseCheckpointSaver[Any] | None = None,
          truncate_wal: bool = False) -> Opened:
    """Open the workspace, reconcile the payments left in flight, wire up the backup.

    The checkpointer is a SqliteSaver on ROOT/checkpoints.sqlite unless given (async
    code passes an AsyncSqliteSaver on the same file)."""
    root.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(root / "ledger.jsonl")
    service = PaymentService(service_dir, silent_every)
    # A restored agent first settles what the backup recorded in flight: the service
    # knows each payment by its idempotency key, so none is paid twice or lost.
    settled = reconcile(ledger, service.lookup)
    server = ControlServer(socket_path, agent="payagent", ledger=ledger) if socket_path else None
    index = VectorIndex(root / "memory.sqlite", hashed_embedding(DIM), DIM, server=server,
                        truncate_wal=truncate_wal)
    store = SqliteStore(sqlite3.connect(str(root / "store.sqlite"), check_same_thread=False,
                                        isolation_level=None))
    store.conn.execute("PRAGMA journal_mode=WAL")
    store.setup()
    agent = Agent(service, ledger, store, index, after_index)
    path = root / "checkpoints.sqlite"
    if checkpointer is None:
        checkpointer = SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
    compiled = build(agent).compile(checkpointer=checkpointer, store=store)
    graph: Any = (BackupReady(compiled, server, checkpoint_path=path, truncate_wal=truncate_wal)
                  if server else compiled)
    if server:
        server.start()
    return Opened(agent, graph, server, settled)


def run_threads(opened: Opened, threads: int, turns: int, stop: threading.Event,
                **options: Any) -> None:
    """Each thread: `turns` user messages one after the other (0: until stopped)."""

    def worker(name: str) -> None:
        for n in itertools.count(1):
            if stop.is_set() or (turns and n > turns):
                return
            opened.graph.invoke({"messages": [HumanMessage(f"pay bob, turn {n}")]},
                                thread_config(name), **options)

    workers = [threading.Thread(target=worker, args=(f"t{i}",), daemon=True)
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


async def arun(args: argparse.Namespace, after_index: Callable[[], None] | None) -> None:
    """The agent in async code: an AsyncSqliteSaver, each thread a task, `ainvoke` per turn."""
    async with AsyncSqliteSaver.from_conn_string(str(args.root / "checkpoints.sqlite")) as saver:
        opened = start(args.root, args.service, None if args.plain else args.socket,
                       args.silent_every, after_index, saver, args.truncate_wal)
        if args.review and not (await opened.graph.aget_state(thread_config("review"))).values:
            await opened.graph.ainvoke({"messages": [HumanMessage("pay bob a large sum")]},
                                       thread_config("review"))
        print("ready", json.dumps({"reconciled": opened.settled}), flush=True)
        started = time.monotonic()
        await arun_threads(opened, args.threads, args.turns, threading.Event())
        finished(args, started)


def finished(args: argparse.Namespace, started: float) -> None:
    seconds = time.monotonic() - started
    print("finished", json.dumps({"turns": args.threads * args.turns,
                                  "seconds": round(seconds, 3)}), flush=True)


async def arun_threads(opened: Opened, threads: int, turns: int, stop: threading.Event) -> None:

    async def worker(name: str) -> None:
        for n in itertools.count(1):
            if stop.is_set() or (turns and n > turns):
                return
            await opened.graph.ainvoke({"messages": [HumanMessage(f"pay bob, turn {n}")]},
                                       thread_config(name))

    await asyncio.gather(*(worker(f"t{i}") for i in range(threads)))


def main(argv: list[str] | None = None, after_index: Callable[[], None] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["run"])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--service", type=Path, required=True)
    ap.add_argument("--socket", type=Path, help="the control socket (omit with --plain)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--turns", type=int, default=0, help="turns per thread (0: forever)")
    ap.add_argument("--silent-every", type=int, default=7,
                    help="the service leaves every Nth payment unanswered")
    ap.add_argument("--review", action="store_true",
                    help="also start thread 'review' with a payment that waits for approval")
    ap.add_argument("--async", dest="use_async", action="store_true", help="run with ainvoke")
    ap.add_argument("--truncate-wal", action="store_true",
                    help="flush also moves the SQLite WALs into their database files")
    ap.add_argument("--plain", action="store_true",
                    help="no adapter and no control socket (what not to do; for comparison)")
    ap.add_argument("--durability", choices=["sync", "async", "exit"],
                    help="with --plain: LangGraph's durability (default: LangGraph's own)")
    args = ap.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    if args.use_async:
        asyncio.run(arun(args, after_index))
        return
    opened = start(args.root, args.service, None if args.plain else args.socket,
                   args.silent_every, after_index, truncate_wal=args.truncate_wal)
    if args.review and not opened.graph.get_state(thread_config("review")).values:
        # stops at interrupt(): waits for a human's Command(resume=...)
        opened.graph.invoke({"messages": [HumanMessage("pay bob a large sum")]},
                            thread_config("review"))
    print("ready", json.dumps({"reconciled": opened.settled}), flush=True)
    started = time.monotonic()
    options = {"durability": args.durability} if args.plain and args.durability else {}
    run_threads(opened, args.threads, args.turns, threading.Event(), **options)
    finished(args, started)


if __name__ == "__main__":
    main()
