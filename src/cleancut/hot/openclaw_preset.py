"""The `openclaw` source preset: what to back up of a gateway, read from OpenClaw's config.

    [sources.claw]
    preset = "openclaw"
    # openclaw_config = "/home/claw/.openclaw/openclaw.json"   (optional)
    # state_dir = "/home/claw/.openclaw"                        (optional)
    # include_logs = true                                        (optional)

An operator should not have to restate what OpenClaw already knows. The preset reads
the gateway's own config file and resolves, as OpenClaw 2026.9.6 does
(src/config/paths.ts, src/agents/agent-scope-config.ts, src/agents/workspace-default-path.ts):

- the config file: `openclaw_config`, else $OPENCLAW_CONFIG_PATH, else
  ~/.openclaw/openclaw.json (home: $OPENCLAW_HOME, else $HOME);
- the state dir: `state_dir`, else $OPENCLAW_STATE_DIR, else the config file's directory
  (OpenClaw's own layout keeps openclaw.json in the state dir);
- each agent's workspace (`agents.list[]` or `agents.entries`, else the implicit agent
  `main`): its own `workspace`; else `agents.defaults.workspace` (for the default agent
  as is, for another `<it>/<id>`); else, for the default agent, $OPENCLAW_WORKSPACE_DIR
  or `<state dir>/workspace`; else `<state dir>/workspace-<id>`. An agent's configured
  `agentDir` (its database) the same way;
- the gateway: `openclaw://127.0.0.1:<port>` with $OPENCLAW_GATEWAY_PORT, else
  `gateway.port`, else 18789.

The source is then a source of named directories (decision 0006): `state`, and each
workspace or agent dir outside it (`workspace` for the default agent's,
`workspace-<id>`, `agent-<id>`); one inside the state dir is already in its cut. It
leaves out what the gateway regenerates or holds only while it runs: the control UI's
asset cache (`state/cache`), `state/tmp` (its lock and socket files), lock files, the
temporary copies and lock databases of a memory reindex, and the logs (`state/logs`
and `logging.file`) unless `include_logs = true`. What it resolved, and from where, is
what `cleancut config show --source NAME` prints.

Not followed: `$include` files of the config, SecretRefs, OPENCLAW_PROFILE's separate
state dirs (name the profile's state dir with `state_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleancut.errors import UsageError
from cleancut.repository.sourcedirs import NAME_RE

from .openclaw import CONFIG_ENV, read_config

PRESET_KEYS = ("preset", "openclaw_config", "state_dir", "include_logs")
DEFAULT_PORT = 18789
# What a running gateway regenerates or holds only while it runs, as snapshot paths
# (the state dir is the directory `state`) and base names.
REGENERATED = (
    "state/cache",  # the control UI's assets (tens of MB), rebuilt at start
    "state/tmp",  # the running process's lock files, sockets and transfers
    "*.lock",
    "*.sock",
    "*.sqlite.memory-reindex-*",  # a memory reindex's temporary database and sidecars
    "*.sqlite.reindex-lock.sqlite*",  # and its lock database
)
LOGS = "state/logs"

Resolved = list[tuple[str, str, str]]  # (what, value, where it came from)


def resolve(
    raw: dict[str, Any], base: Path, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], Resolved]:
    """The source table the preset stands for, and what it resolved from where."""
    env = os.environ if env is None else env
    for key in ("path", "paths"):
        if key in raw:
            raise UsageError(f"'{key}' is the preset's to set (it reads OpenClaw's config)")
    resolved: Resolved = []
    config_file = _config_file(raw, base, env, resolved)
    config = read_config(config_file)
    state = _state_dir(raw, base, env, config_file, resolved)
    dirs: dict[str, Path] = {"state": state}
    for name, path, origin in _agent_dirs(config, state, env):
        _add(dirs, name, path, origin, resolved)
    port, port_origin = _port(config, env, config_file)
    agent = raw.get("agent") or f"openclaw://127.0.0.1:{port}"
    resolved.append(("agent", str(agent), "agent" if "agent" in raw else port_origin))
    include_logs = raw.get("include_logs", False)
    if not isinstance(include_logs, bool):
        raise UsageError("include_logs: expected true or false")
    excludes = list(REGENERATED)
    if not include_logs:
        excludes += [LOGS, *_log_file(config, dirs, env)]
    resolved.append(("left out", ", ".join(excludes), "the preset"
                     + ("" if include_logs else "; include_logs = true keeps the logs")))
    if not _inside(config_file, state):
        resolved.append(("note", f"{config_file} is outside the state dir: not in the cut",
                         "back it up with its own source"))
    table = {k: v for k, v in raw.items() if k not in PRESET_KEYS}
    table["paths"] = {name: str(path) for name, path in dirs.items()}
    table["agent"] = agent
    user_excludes = raw.get("exclude", [])
    if not isinstance(user_excludes, list):
        raise UsageError("exclude: expected a list of strings")
    table["exclude"] = [*excludes, *user_excludes]
    return table, resolved


def _home(env: Mapping[str, str]) -> Path:
    explicit = (env.get("OPENCLAW_HOME") or "").strip()
    home = (env.get("HOME") or "").strip() or str(Path.home())
    if explicit:
        return Path(explicit.replace("~", home, 1) if explicit.startswith("~") else explicit)
    return Path(home)


def _user_path(text: str, env: Mapping[str, str], base: Path | None = None) -> Path:
    """A path as OpenClaw reads one: `~` is the OpenClaw home; relative to `base`."""
    text = text.strip()
    if text == "~" or text.startswith("~/"):
        return Path(os.path.normpath(_home(env) / text[2:]))
    path = Path(text)
    return Path(os.path.normpath(path if path.is_absolute() else (base or Path.cwd()) / path))


def _config_file(raw: dict[str, Any], base: Path, env: Mapping[str, str],
                 resolved: Resolved) -> Path:
    given = raw.get("openclaw_config")
    if given is not None:
        if not isinstance(given, str) or not given:
            raise UsageError("openclaw_config: expected a path")
        path, origin = _user_path(given, env, base), "openclaw_config"
    elif (env.get(CONFIG_ENV) or "").strip():
        path, origin = _user_path(env[CONFIG_ENV], env), f"${CONFIG_ENV}"
    else:
        path, origin = _home(env) / ".openclaw" / "openclaw.json", "OpenClaw's default"
    if not path.is_file():
        raise UsageError(f"OpenClaw config {path} ({origin}) is not there")
    resolved.append(("openclaw config", str(path), origin))
    return path


def _state_dir(raw: dict[str, Any], base: Path, env: Mapping[str, str], config_file: Path,
               resolved: Resolved) -> Path:
    given = raw.get("state_dir")
    if given is not None:
        if not isinstance(given, str) or not given:
            raise UsageError("state_dir: expected a path")
        path, origin = _user_path(given, env, base), "state_dir"
    elif (env.get("OPENCLAW_STATE_DIR") or "").strip():
        path, origin = _user_path(env["OPENCLAW_STATE_DIR"], env), "$OPENCLAW_STATE_DIR"
    else:
        path, origin = config_file.parent, "the config file's directory"
    if not path.is_dir():
        raise UsageError(f"OpenClaw state dir {path} ({origin}) is not a directory")
    resolved.append(("state dir", str(path), origin))
    return path


def _roster(config: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The configured agents (each with its `id`), and whether a roster exists at all."""
    agents = config.get("agents")
    if not isinstance(agents, dict):
        return [], False
    entries = agents.get("entries")
    if isinstance(entries, dict):
        return [{**e, "id": k} for k, e in entries.items() if isinstance(e, dict)], True
    listed = agents.get("list")
    if isinstance(listed, list):
        return [e for e in listed if isinstance(e, dict)], True
    return [], "entries" in agents or "list" in agents


def _agent_id(value: object) -> str:
    """OpenClaw's normalizeAgentId: lowercase, other characters as '-', else `main`."""
    text = str(value or "").strip().lower()
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in text)
    cleaned = cleaned.strip("-")[:64]
    return cleaned or "main"


def _agent_dirs(config: dict[str, Any], state: Path,
                env: Mapping[str, str]) -> list[tuple[str, Path, str]]:
    entries, has_roster = _roster(config)
    if not has_roster:
        entries = [{"id": "main"}]
    # The agent whose workspace is the default one: the one marked default, else the only
    # one; with several and no mark, none is (each gets <defaults.workspace>/<id>).
    marked = [e for e in entries if e.get("default") is True]
    owner: str | None = None
    if len(marked) == 1:
        owner = _agent_id(marked[0].get("id"))
    elif len(entries) == 1:
        owner = _agent_id(entries[0].get("id"))
    defaults = (config.get("agents") or {}).get("defaults") or {}
    fallback = defaults.get("workspace") if isinstance(defaults, dict) else None
    found = []
    for entry in entries:
        agent = _agent_id(entry.get("id"))
        name = "workspace" if agent == owner else f"workspace-{agent}"
        own = entry.get("workspace")
        if isinstance(own, str) and own.strip():
            found.append((name, _user_path(own, env), f"agent {agent}'s workspace"))
        elif isinstance(fallback, str) and fallback.strip():
            path = _user_path(fallback, env)
            found.append((name, path if agent == owner else path / agent,
                          "agents.defaults.workspace"))
        elif agent == owner and (env.get("OPENCLAW_WORKSPACE_DIR") or "").strip():
            found.append((name, _user_path(env["OPENCLAW_WORKSPACE_DIR"], env),
                          "$OPENCLAW_WORKSPACE_DIR"))
        else:
            default = state / ("workspace" if agent == owner else f"workspace-{agent}")
            found.append((name, default, "OpenClaw's default"))
        agent_dir = entry.get("agentDir")
        if isinstance(agent_dir, str) and agent_dir.strip():
            found.append(
                (f"agent-{agent}", _user_path(agent_dir, env), f"agent {agent}'s agentDir")
            )
    return found


def _add(dirs: dict[str, Path], name: str, path: Path, origin: str, resolved: Resolved) -> None:
    """A directory joins the source unless the state dir (or another) already holds it."""
    holder = next((n for n, p in dirs.items() if _inside(path, p)), None)
    if holder is not None:
        resolved.append((name, str(path), f"{origin}; inside {holder}, in its cut"))
        return
    if not path.is_dir():
        resolved.append((name, str(path), f"{origin}; not there (yet): not in the cut"))
        return
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"agent directory name {name!r} cannot name a directory of the source")
    dirs[name] = path
    resolved.append((name, str(path), origin))


def _inside(path: Path, parent: Path) -> bool:
    a, b = os.path.realpath(path), os.path.realpath(parent)
    return os.path.commonpath([a, b]) == b


def _port(config: dict[str, Any], env: Mapping[str, str], config_file: Path) -> tuple[int, str]:
    text = (env.get("OPENCLAW_GATEWAY_PORT") or "").strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text), "$OPENCLAW_GATEWAY_PORT"
    port = (config.get("gateway") or {}).get("port")
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port, f"gateway.port in {config_file}"
    return DEFAULT_PORT, "OpenClaw's default port"


def _log_file(config: dict[str, Any], dirs: dict[str, Path], env: Mapping[str, str]) -> list[str]:
    """`logging.file`, as the snapshot path it has when it lies in one of the directories."""
    logging = config.get("logging")
    text = logging.get("file") if isinstance(logging, dict) else None
    if not isinstance(text, str) or not text.strip():
        return []
    path = _user_path(text, env)
    for name, root in dirs.items():
        if _inside(path, root):
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
            shown = f"{name}/{rel}"
            return [] if shown.startswith(LOGS + "/") else [shown]
    return []
