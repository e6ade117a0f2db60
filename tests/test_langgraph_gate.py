"""The LangGraph adapter's cut, shown step by step: a quiesce asked for while a node runs
holds the run at the end of that super-step (its checkpoint stored), before the next
node starts, for invoke, stream, ainvoke and astream alike; resume lets it go on.

In-process and deterministic: the first node waits for the test, the quiesce goes over
the real control socket, and the second node cannot start before the resume.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from cleancut.sdk.langgraph import BackupReady
from cleancut.sdk.server import ControlServer


class State(TypedDict):
    trail: list[str]


class Steps:
    """Two nodes, first then second; the first waits until the test lets it end."""

    def __init__(self) -> None:
        self.first_entered = threading.Event()
        self.first_may_end = threading.Event()
        self.second_started = threading.Event()

    def first(self, state: State) -> dict[str, Any]:
        self.first_entered.set()
        assert self.first_may_end.wait(60)
        return {"trail": [*state["trail"], "first"]}

    def second(self, state: State) -> dict[str, Any]:
        self.second_started.set()
        return {"trail": [*state["trail"], "second"]}


def build(steps: Steps, saver: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node("first", steps.first)
    graph.add_node("second", steps.second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph.compile(checkpointer=saver)


def request(conn: socket.socket, message: dict[str, Any]) -> dict[str, Any]:
    conn.sendall(json.dumps(message).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        assert chunk, "the agent closed the connection"
        data += chunk
    return dict(json.loads(data))


def run_sync(graph: BackupReady, mode: str, config: Any) -> Any:
    if mode == "invoke":
        return graph.invoke({"trail": []}, config)
    if mode == "stream":
        return list(graph.stream({"trail": []}, config, stream_mode="values"))[-1]

    async def go() -> Any:
        if mode == "ainvoke":
            return await graph.ainvoke({"trail": []}, config)
        return [c async for c in graph.astream({"trail": []}, config, stream_mode="values")][-1]

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_a_quiesce_holds_the_run_between_two_super_steps(tmp_path: Path, mode: str) -> None:
    steps = Steps()
    # SqliteSaver has no async methods: the async runs use LangGraph's in-memory saver
    # (the async SQLite saver runs in the agent test, tests/test_langgraph.py).
    saver: Any = (SqliteSaver(sqlite3.connect(str(tmp_path / "cp.sqlite"), check_same_thread=False))
                  if mode in ("invoke", "stream") else InMemorySaver())
    server = ControlServer(tmp_path / "agent.sock", flush_interval=None)
    graph = BackupReady(build(steps, saver), server)
    server.start()
    config = {"configurable": {"thread_id": "t"}}
    outcome: dict[str, Any] = {}
    run = threading.Thread(target=lambda: outcome.update(result=run_sync(graph, mode, config)))
    try:
        run.start()
        assert steps.first_entered.wait(60)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(tmp_path / "agent.sock"))
            answer: dict[str, Any] = {}
            asking = threading.Thread(target=lambda: answer.update(
                request(conn, {"id": 1, "op": "quiesce", "timeout_ms": 60_000})))
            asking.start()
            while server.state != "quiescing":  # the quiesce waits for the running step
                time.sleep(0.005)
            steps.first_may_end.set()
            asking.join()
            assert answer["ok"] and answer["state"] == "quiesced"
            # Held at the boundary: the first step's checkpoint is stored, the second
            # step has not started, and it cannot before the resume.
            stored = saver.get_tuple(config)
            assert stored is not None
            assert stored.checkpoint["channel_values"]["trail"] == ["first"]
            assert not steps.second_started.is_set()
            assert request(conn, {"id": 2, "op": "resume"})["ok"]
        run.join(60)
        assert outcome["result"] == {"trail": ["first", "second"]}
    finally:
        steps.first_may_end.set()
        server.stop()


def test_a_run_with_another_durability_is_refused(tmp_path: Path) -> None:
    steps = Steps()
    steps.first_may_end.set()
    server = ControlServer(tmp_path / "agent.sock", flush_interval=None)
    graph = BackupReady(build(steps, InMemorySaver()), server)
    with pytest.raises(ValueError, match="durability"):
        graph.invoke({"trail": []}, {"configurable": {"thread_id": "t"}}, durability="async")


def test_a_graph_without_a_checkpointer_is_refused(tmp_path: Path) -> None:
    graph = StateGraph(State)
    graph.add_node("only", lambda s: s)
    graph.add_edge(START, "only")
    server = ControlServer(tmp_path / "agent.sock", flush_interval=None)
    compile_: Callable[[], Any] = graph.compile
    with pytest.raises(ValueError, match="checkpointer"):
        BackupReady(compile_(), server)


def test_a_run_inside_a_step_lives_in_that_step(tmp_path: Path) -> None:
    """A node that invokes a backup-ready graph: the inner run is part of the outer step,
    so the quiesce neither deadlocks on it nor cuts it; it holds after the outer step."""
    steps = Steps()
    server = ControlServer(tmp_path / "agent.sock", flush_interval=None)
    inner = BackupReady(build(steps, InMemorySaver()), server)
    after = threading.Event()

    def call(state: State) -> dict[str, Any]:
        done = inner.invoke({"trail": []}, {"configurable": {"thread_id": "inner"}})
        return {"trail": [*state["trail"], *done["trail"]]}

    def then(state: State) -> dict[str, Any]:
        after.set()
        return {"trail": [*state["trail"], "then"]}

    outer_graph = StateGraph(State)
    outer_graph.add_node("call", call)
    outer_graph.add_node("then", then)
    outer_graph.add_edge(START, "call")
    outer_graph.add_edge("call", "then")
    outer = BackupReady(outer_graph.compile(checkpointer=InMemorySaver()), server)
    server.start()
    outcome: dict[str, Any] = {}
    run = threading.Thread(target=lambda: outcome.update(
        result=outer.invoke({"trail": []}, {"configurable": {"thread_id": "outer"}})))
    try:
        run.start()
        assert steps.first_entered.wait(60)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(tmp_path / "agent.sock"))
            answer: dict[str, Any] = {}
            asking = threading.Thread(target=lambda: answer.update(
                request(conn, {"id": 1, "op": "quiesce", "timeout_ms": 60_000})))
            asking.start()
            while server.state != "quiescing":
                time.sleep(0.005)
            steps.first_may_end.set()
            asking.join()
            assert answer["ok"] and answer["state"] == "quiesced"
            assert steps.second_started.is_set()  # the inner run went on inside the step
            assert not after.is_set()  # the outer run is held at its boundary
            assert request(conn, {"id": 2, "op": "resume"})["ok"]
        run.join(60)
        assert outcome["result"] == {"trail": ["first", "second", "then"]}
    finally:
        steps.first_may_end.set()
        server.stop()
