"""The openclaw preset's resolution, on config files laid out as OpenClaw writes them.

No gateway here (tests/test_openclaw_hot.py runs the preset against a real one): these
pin the rules OpenClaw 2026.9.6 applies to find the state dir, each agent's workspace
and agent dir, and the gateway's port, and what the preset leaves out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, assert_no_traceback

from cleancut.errors import UsageError
from cleancut.hot.openclaw_preset import resolve


def _layout(tmp_path: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    state = tmp_path / "home" / ".openclaw"
    state.mkdir(parents=True)
    path = state / "openclaw.json"
    path.write_text(json.dumps(config))
    return state, path


def _resolved(table: dict[str, Any], env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    out, resolved = resolve({"preset": "openclaw", **table}, tmp_path, env)
    out["origins"] = {what: origin for what, _, origin in resolved}
    return out


def test_the_default_layout_is_the_state_dir_alone(tmp_path: Path) -> None:
    state, _ = _layout(tmp_path, {"gateway": {"port": 19001}})
    (state / "workspace").mkdir()
    out = _resolved({}, {"HOME": str(tmp_path / "home")}, tmp_path)
    assert out["paths"] == {"state": str(state)}  # the workspace is inside: in its cut
    assert out["agent"] == "openclaw://127.0.0.1:19001"
    assert out["origins"]["openclaw config"] == "OpenClaw's default"
    assert out["origins"]["state dir"] == "the config file's directory"
    assert "inside state" in out["origins"]["workspace"]
    assert {"state/cache", "state/tmp", "state/logs", "*.lock"} <= set(out["exclude"])


def test_workspaces_outside_the_state_dir_join_it_by_name(tmp_path: Path) -> None:
    shared = tmp_path / "srv" / "ws"
    ops = tmp_path / "srv" / "ops-ws"
    agent_dir = tmp_path / "srv" / "ops-agent"
    for d in (shared / "research", ops, agent_dir):
        d.mkdir(parents=True)
    config = {
        "agents": {
            "defaults": {"workspace": str(shared)},
            "list": [
                {"id": "main", "default": True},
                {"id": "Research"},  # no workspace of its own: <defaults.workspace>/<id>
                {"id": "ops", "workspace": str(ops), "agentDir": str(agent_dir)},
            ],
        },
        "logging": {"file": "~/.openclaw/state-logs/gw.log"},
    }
    state, _ = _layout(tmp_path, config)
    out = _resolved({"include_logs": False}, {"HOME": str(tmp_path / "home")}, tmp_path)
    assert out["paths"] == {
        "state": str(state),
        "workspace": str(shared),
        "agent-ops": str(agent_dir),
        "workspace-ops": str(ops),
    }
    assert "inside workspace" in out["origins"]["workspace-research"]
    assert "state/state-logs/gw.log" in out["exclude"]


def test_the_environment_as_openclaw_reads_it(tmp_path: Path) -> None:
    state, config = _layout(tmp_path, {})
    other_state = tmp_path / "var" / "claw"
    work = tmp_path / "var" / "work"
    other_state.mkdir(parents=True)
    work.mkdir(parents=True)
    env = {"HOME": "/nonexistent", "OPENCLAW_CONFIG_PATH": str(config),
           "OPENCLAW_STATE_DIR": str(other_state), "OPENCLAW_WORKSPACE_DIR": str(work),
           "OPENCLAW_GATEWAY_PORT": "19444"}
    out = _resolved({"exclude": ["workspace/scratch"], "include_logs": True}, env, tmp_path)
    assert out["paths"] == {"state": str(other_state), "workspace": str(work)}
    assert out["agent"] == "openclaw://127.0.0.1:19444"
    assert out["origins"]["state dir"] == "$OPENCLAW_STATE_DIR"
    assert out["origins"]["workspace"] == "$OPENCLAW_WORKSPACE_DIR"
    assert "note" in out["origins"]  # the config file is outside the state dir
    assert "state/logs" not in out["exclude"] and out["exclude"][-1] == "workspace/scratch"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"openclaw_config": "nope.json"}, "is not there"),
        ({"state_dir": "missing"}, "is not a directory"),
        ({"path": "/x"}, "'path' is the preset's"),
        ({"include_logs": "yes"}, "include_logs"),
    ],
)
def test_mistakes_are_usage_errors(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    _layout(tmp_path, {})
    with pytest.raises(UsageError, match=message):
        resolve({"preset": "openclaw", **table}, tmp_path, {"HOME": str(tmp_path / "home")})


def test_config_show_names_what_the_preset_resolved(cli: CLI, tmp_path: Path) -> None:
    state, config = _layout(tmp_path, {"gateway": {"port": 19002}})
    toml = tmp_path / "cleancut.toml"
    toml.write_text(f'[sources.claw]\npreset = "openclaw"\nopenclaw_config = "{config}"\n')
    res = cli.ok("config", "show", "--source", "claw", "--config", str(toml))
    assert f"state = {state}" in res.out
    assert "agent: openclaw://127.0.0.1:19002  (gateway.port in" in res.out
    toml.write_text('[sources.claw]\npreset = "openclaw"\nopenclaw_config = "missing.json"\n')
    res = cli.run("config", "show", "--config", str(toml))
    assert res.code == 2 and "sources.claw: preset openclaw: OpenClaw config" in res.err
    assert_no_traceback(res)
    toml.write_text('[sources.claw]\npreset = "hermes"\n')
    res = cli.run("config", "show", "--config", str(toml))
    assert res.code == 2 and "unknown preset" in res.err
