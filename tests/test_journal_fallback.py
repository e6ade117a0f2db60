"""Journal mode from the operator's side: tick ships the journal on the profile's sync
interval, and a backup that misses quiesce falls back to the journal's state.

The agent is the simulated one in journal mode (its own process); the repository and
the commands are real. A journal state is a clean cut at a record boundary, so the
fallback snapshot must be exactly the agent's state at its journal_seq.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cleancut.agent.simulated.checker import check_workspace
from conftest import CLI
from test_journal_live import start_agent, stop_agent


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
        time.sleep(1.0)
        # A quiesce that cannot succeed in time: the journal answers instead.
        res = repo_cli.run(
            "backup", str(root), "--name", "j", "--agent", f"unix:{agent.socket}",
            "--quiesce-timeout", "1ms", "--fallback", "journal", "--journal", str(journal),
            "--json",
        )
    finally:
        stop_agent(agent)
    assert res.code == 7, res.err
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
        time.sleep(0.5)
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
