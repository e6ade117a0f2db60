"""A real LangGraph agent with a real sqlite-vec index, backed up hot and resumed.

The agent is the documented example (docs/examples/langgraph_agent.py) in its own
process, in a network namespace of its own (nothing can leave the machine), several
threads running flat out: its tools pay through a simulated payment service via the
ledger and write memories into LangGraph's memory store and the vector index.
`cleancut backup --agent` takes hot backups of it; every restore is opened by the
example's own start (which reconciles the payments in flight), checked, and continued
for one more turn.

Without the adapter, a copy taken at a moment pinned inside a step (the index holds a
memory that the store does not record yet) fails the same checks, for certain.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, agent_hello
from langchain_core.messages import HumanMessage
from langgraph.types import Command
from langgraph_agent import load_example

from cleancut.sdk.ledger import Ledger

HERE = Path(__file__).parent
EX = load_example()
THREADS = ["t0", "t1", "t2", "t3"]
QUIET_ENV = {"LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false"}


@dataclass
class LGAgent:
    root: Path
    socket: Path
    service: Path
    proc: subprocess.Popen[str]
    pin: Path | None

    @property
    def address(self) -> str:
        return f"unix:{self.socket}"

    def payments(self) -> int:
        """How far the agent has got: every payment request is a line at the service."""
        path = self.service / "payments.jsonl"
        return path.stat().st_size if path.exists() else 0

    def wait_started(self, threads: list[str]) -> None:
        """Until every thread has paid once (so each has its checkpoints)."""
        path = self.service / "payments.jsonl"
        while True:
            assert self.proc.poll() is None, "the agent died"
            lines = path.read_text().splitlines() if path.exists() else []
            paid = {json.loads(line)["key"].split("/")[0] for line in lines if line.strip()}
            if paid >= set(threads):
                return
            time.sleep(0.01)

    def wait_progress(self) -> None:
        """Until the agent has paid again (it runs: each backup sees a new state)."""
        before = self.payments()
        while self.payments() == before:
            assert self.proc.poll() is None, "the agent died"
            time.sleep(0.01)


def start_agent(tmp_path: Path, *extra: str, name: str = "lg", pin: bool = False) -> LGAgent:
    root, sock, service = tmp_path / name, tmp_path / f"{name}.sock", tmp_path / f"{name}-svc"
    pin_dir = tmp_path / f"{name}-pin" if pin else None
    pinning = ["--pin-dir", str(pin_dir)] if pin_dir else []
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the agent
    proc = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, str(HERE / "langgraph_agent.py"), *pinning,
         "run", "--root", str(root), "--service", str(service), "--socket", str(sock),
         "--review", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
        env=os.environ | QUIET_ENV,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        proc.wait()
        log_text = (tmp_path / f"{name}.log").read_text()
        raise AssertionError(f"agent did not start: {line!r} {log_text}")
    return LGAgent(root, sock, service, proc, pin_dir)


def state_of(agent: LGAgent) -> str:
    """The agent's state, asked over a connection of our own (as an operator could)."""
    return str(agent_hello(agent.socket)["state"])


def stop_agent(agent: LGAgent) -> None:
    if agent.proc.poll() is None:
        os.killpg(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[LGAgent]:
    a = start_agent(tmp_path, "--threads", str(len(THREADS)))
    yield a
    stop_agent(a)


def hot(cli: CLI, agent: LGAgent) -> dict[str, Any]:
    res = cli.ok("backup", str(agent.root), "--name", "lg", "--agent", agent.address,
                 "--quiesce-timeout", "20s", "--horizon", "2s", "--json")
    return dict(json.loads(res.out))


def restored(cli: CLI, snapshot: str, agent: LGAgent, target: Path) -> tuple[Path, Path]:
    """The snapshot restored to `target`, with a copy of the service as it is now."""
    cli.ok("restore", snapshot, "--target", str(target / "root"))
    shutil.copytree(agent.service, target / "service")
    return target / "root", target / "service"


# --- the checks -------------------------------------------------------------------


def memories(opened: Any, thread: str | None = None) -> dict[str, str]:
    """The memory records in the store (of one thread, or all): key -> text."""
    namespace = ("memories", thread) if thread else ("memories",)
    items = opened.agent.store.search(namespace, limit=1_000_000)
    return {item.key: item.value["text"] for item in items}


def agreement(opened: Any, threads: list[str]) -> list[str]:
    """Every thread's latest checkpoint loads; every memory record has its index entry
    and no index entry is without its record."""
    problems: list[str] = []
    for name in threads:
        if not opened.graph.get_state(EX.thread_config(name)).values:
            problems.append(f"{name}: no checkpoint")
    records = set(memories(opened))
    indexed = opened.agent.index.keys()
    if indexed - records:
        problems.append(f"index entries without a memory record: {sorted(indexed - records)}")
    if records - indexed:
        problems.append(f"memory records without an index entry: {sorted(records - indexed)}")
    return problems


def check_restored(root: Path, service: Path, inflight: set[str], threads: list[str] = THREADS
                   ) -> None:
    """The whole promise on one restored snapshot (raises AssertionError)."""
    before = Ledger(root / "ledger.jsonl")
    assert {a["key"] for a in before.inflight()} == inflight  # the restored ledger lists them
    before.close()
    requests = EX.PaymentService(service).requests()
    opened = EX.start(root, service, None)  # the example's start: reconciles first
    assert set(opened.settled) == inflight
    assert set(opened.settled.values()) <= {"receipt"}  # the service had taken each one
    assert EX.PaymentService(service).requests() == requests  # reconciled, none repeated
    assert opened.agent.ledger.inflight() == []
    assert agreement(opened, [*threads, "review"]) == []

    hits = opened.agent.index.query("paid bob 30", k=3)
    restored_memories = memories(opened)
    assert hits and all(restored_memories[h.key] == h.text for h in hits)
    assert all(h.text.endswith("paid bob 30") for h in hits)

    # The thread stopped at interrupt(): its pending writes hold the interrupt and the
    # write of the audit task that finished beside it in the same step.
    review = EX.thread_config("review")
    state = opened.graph.get_state(review)
    assert state.next == ("tools",)
    assert [i.value for i in state.interrupts] == [{"approve": 500}]
    pending = opened.graph.checkpointer.get_tuple(review).pending_writes
    channels = [channel for _, channel, _ in pending]
    assert "__interrupt__" in channels and ("audited", 1) in [(c, v) for _, c, v in pending]
    result = opened.graph.invoke(Command(resume="yes"), review)
    assert result["messages"][-1].content == "done"
    assert result["audited"] == 1  # the one turn audited once
    assert list(memories(opened, "review").values()) == ["review: paid bob 500"]

    # Every thread goes on: a run cut at a step boundary finishes, then one more turn.
    for name in threads:
        config = EX.thread_config(name)
        if opened.graph.get_state(config).next:
            opened.graph.invoke(None, config)
        count = len(memories(opened, name))
        result = opened.graph.invoke({"messages": [HumanMessage("one more")]}, config)
        assert result["messages"][-1].content == "done"
        assert len(memories(opened, name)) == count + 1
    assert agreement(opened, [*threads, "review"]) == []
    opened.agent.index.close()


# --- with the adapter -------------------------------------------------------------


def test_hot_backups_of_a_langgraph_agent_restore_and_go_on(
    repo_cli: CLI, agent: LGAgent, tmp_path: Path
) -> None:
    summaries = []
    agent.wait_started(THREADS)
    for _ in range(10):
        agent.wait_progress()
        summary = hot(repo_cli, agent)
        assert summary["consistency"] == "quiesced"
        summaries.append(summary)
    assert agent.proc.poll() is None
    stop_agent(agent)
    assert any(s["inflight"] for s in summaries)  # the service left some unanswered
    for i, summary in enumerate(summaries):
        root, service = restored(repo_cli, str(summary["snapshot_id"]), agent, tmp_path / f"r{i}")
        check_restored(root, service, {a["key"] for a in summary["inflight"]})


def test_async_agent_is_backed_up_at_step_boundaries_too(repo_cli: CLI, tmp_path: Path) -> None:
    agent = start_agent(tmp_path, "--threads", str(len(THREADS)), "--async", name="alg")
    try:
        summaries = []
        agent.wait_started(THREADS)
        for _ in range(2):
            agent.wait_progress()
            summary = hot(repo_cli, agent)
            assert summary["consistency"] == "quiesced"
            summaries.append(summary)
    finally:
        stop_agent(agent)
    for i, summary in enumerate(summaries):
        root, service = restored(repo_cli, str(summary["snapshot_id"]), agent, tmp_path / f"a{i}")
        check_restored(root, service, {a["key"] for a in summary["inflight"]})


# --- without it, and with it at the same pinned moment ------------------------------


def test_a_copy_inside_a_step_fails_without_the_adapter_and_waits_with_it(
    repo_cli: CLI, tmp_path: Path
) -> None:
    # Without the adapter, even with durability="sync" (what the adapter imposes): the
    # failure comes from the missing cut between steps, not from late checkpoints.
    plain = start_agent(tmp_path, "--threads", "1", "--plain", "--durability", "sync",
                        name="plain", pin=True)
    try:
        assert plain.pin is not None
        while not (plain.pin / "inside").exists():  # the step stands inside its write
            assert plain.proc.poll() is None, "the agent died"
            time.sleep(0.01)
        res = repo_cli.ok("backup", str(plain.root), "--name", "plain", "--json")
        summary = json.loads(res.out)
        (plain.pin / "go").touch()
        listed = json.loads(repo_cli.ok("snapshots", "--json").out)
        assert [s["consistency"] for s in listed] == ["unquiesced"]
    finally:
        stop_agent(plain)
    root, service = restored(repo_cli, str(summary["snapshot_id"]), plain, tmp_path / "p")
    opened = EX.start(root, service, None)
    found = agreement(opened, ["t0", "review"])
    assert len(found) == 1 and found[0].startswith("index entries without a memory record")
    opened.agent.index.close()

    adapted = start_agent(tmp_path, "--threads", "1", name="adapted", pin=True)
    try:
        assert adapted.pin is not None
        while not (adapted.pin / "inside").exists():
            assert adapted.proc.poll() is None, "the agent died"
            time.sleep(0.01)
        outcome: dict[str, Any] = {}
        backup = threading.Thread(target=lambda: outcome.update(hot(repo_cli, adapted)))
        backup.start()  # asks to quiesce while the step stands inside its write ...
        while state_of(adapted) != "quiescing":
            assert backup.is_alive(), outcome
            time.sleep(0.01)
        (adapted.pin / "go").touch()  # ... waits, and gets it once the step has ended
        backup.join()
        assert outcome["consistency"] == "quiesced"
    finally:
        stop_agent(adapted)
    root, service = restored(repo_cli, str(outcome["snapshot_id"]), adapted, tmp_path / "q")
    check_restored(root, service, {a["key"] for a in outcome["inflight"]}, ["t0"])


def test_the_sdk_does_not_need_langgraph_or_sqlite_vec() -> None:
    probe = (
        "import sys\n"
        "import cleancut.sdk, cleancut.sdk.server, cleancut.sdk.ledger, cleancut.sdk.effects\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('langgraph', 'langchain_core', 'sqlite_vec'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == []
