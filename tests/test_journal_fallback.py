"""Journal mode from the operator's side: tick ships the journal on the profile's sync
interval, and a backup that misses quiesce falls back to the journal's state.

The agent is the simulated one in journal mode (its own process); the repository and
the commands are real. A journal state is a clean cut at a record boundary, so the
fallback snapshot must be exactly the agent's state at its journal_seq.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import CLI
from test_journal_live import start_agent, stop_agent

from cleancut.hot.control import AgentClient
from cleancut.testing.simulated.checker import check_workspace


def _journal_past(address: str, seq: int, within: float = 60.0) -> int:
    """Wait until the agent's journal is durable past `seq` (asking it to flush, as tick
    does), so the journal holds records the base snapshot does not."""
    client = AgentClient(address)
    client.connect()
    try:
        client.hello()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            reply = client.request("flush", timeout=30.0)
            if reply["ok"] and reply["journal_seq"] > seq:
                return int(reply["journal_seq"])
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"the agent's journal did not pass record {seq} in {within}s")


@contextlib.contextmanager
def _quiesce_held_by_another_client(address: str) -> Iterator[None]:
    """Hold the agent's quiesce from a second connection: any other quiesce is answered
    `busy` at once, so the backup misses whatever the scheduling."""
    holder = AgentClient(address)
    holder.connect()
    try:
        holder.hello()
        reply = holder.request("quiesce", timeout=70.0, timeout_ms=60_000, lease_ms=300_000)
        assert reply["ok"] is True, reply
        yield
        holder.request("resume")
    finally:
        holder.close()


def test_quiesce_miss_falls_back_to_the_journal_state(repo_cli: CLI, tmp_path: Path) -> None:
    root, journal, oracle = tmp_path / "root", tmp_path / "journal", tmp_path / "oracle"
    agent = start_agent(root, journal, oracle)
    try:
        base = json.loads(repo_cli.ok(
            "backup", str(root), "--name", "j", "--agent", f"unix:{agent.socket}",
            "--quiesce-timeout", "10s", "--horizon", "1s", "--json",
        ).out)
        assert base["consistency"] == "quiesced"
        assert isinstance(base["capture"]["journal_seq"], int)
        _journal_past(agent.address, base["capture"]["journal_seq"])
        # A quiesce that cannot succeed: another client holds it. The journal answers.
        with _quiesce_held_by_another_client(agent.address):
            res = repo_cli.run(
                "backup", str(root), "--name", "j", "--agent", f"unix:{agent.socket}",
                "--quiesce-timeout", "10s", "--fallback", "journal", "--journal", str(journal),
                "--json",
            )
    finally:
        stop_agent(agent)
    assert res.code == 7, res.err
    assert "busy" in res.err
    summary = json.loads(res.out)
    assert summary["consistency"] == "journal"
    assert summary["quiesce_missed"] is True
    seq = summary["capture"]["journal_seq"]
    assert seq > base["capture"]["journal_seq"]
    target = tmp_path / "restored"
    repo_cli.ok("restore", summary["snapshot_id"], "--target", str(target))
    # A record boundary is a crash-consistent cut with every write whole, exactly at seq.
    assert check_workspace(target, oracle, quiesced=False, journaled=True, journal_seq=seq) == []
    listed = json.loads(repo_cli.ok("snapshots", "--json").out)
    assert [s["consistency"] for s in listed] == ["quiesced", "journal"]


def test_tick_ships_the_journal_on_the_sync_interval(repo_cli: CLI, tmp_path: Path) -> None:
    root, journal, oracle = tmp_path / "root", tmp_path / "journal", tmp_path / "oracle"
    agent = start_agent(root, journal, oracle)
    config = tmp_path / "cleancut.toml"
    config.write_text(
        f'[sources.j]\npath = "{root}"\nagent = "unix:{agent.socket}"\n'
        f'journal = "{journal}"\n[sources.j.overrides]\nincremental_sync_interval = "1h"\n'
    )
    try:
        _journal_past(agent.address, 0)  # records to ship, rather than a sleep that hopes so
        first = repo_cli.run("tick", "--config", str(config), "--json")
        assert first.code == 0, first.err
        actions = {a["what"]: a for a in json.loads(first.out)}
        assert actions["journal"]["ok"] and "shipped records" in actions["journal"]["detail"]
        assert actions["backup"]["ok"]
        # Within the interval: nothing is shipped again.
        second = json.loads(repo_cli.ok("tick", "--config", str(config), "--json").out)
        assert "journal" not in {a["what"] for a in second}
    finally:
        stop_agent(agent)
    batches = json.loads(repo_cli.ok("journal", "ls", "j", "--json").out)
    assert batches and (journal / "shipped").exists()
