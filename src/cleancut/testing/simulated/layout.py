"""Where each part of the simulated agent's state lives (docs: docs/simulated-agent.md).

One agent, "main", in an OpenClaw-style tree: `state/` for the gateway's files
and `workspace/` for the agent's own notes. The agent, the checker and the
tests all find files through this one map, so a path changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AGENT = "main"
WORKSPACE_FILES = (
    "AGENTS.md",
    "SOUL.md",
    "USER.md",
    "IDENTITY.md",
    "TOOLS.md",
    "HEARTBEAT.md",
    "MEMORY.md",
)
BAK_RING = 5  # openclaw.json.bak, .bak.1 … .bak.4


@dataclass(frozen=True)
class Layout:
    """The tree under one root directory."""

    root: Path

    # --- state/ ------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.state / "openclaw.json"

    def config_bak(self, n: int) -> Path:
        return self.state / ("openclaw.json.bak" if n == 0 else f"openclaw.json.bak.{n}")

    @property
    def approvals(self) -> Path:
        return self.state / "exec-approvals.json"

    @property
    def creds(self) -> Path:
        return self.state / "credentials" / "openai" / "creds.json"

    @property
    def auth_profiles(self) -> Path:
        return self.state / "agents" / AGENT / "agent" / "auth-profiles.json"

    @property
    def sessions_dir(self) -> Path:
        return self.state / "agents" / AGENT / "sessions"

    @property
    def sessions_index(self) -> Path:
        return self.sessions_dir / "sessions.json"

    def transcript(self, session_id: str) -> Path:
        return self.sessions_dir / f"{session_id}.jsonl"

    @property
    def cron_jobs(self) -> Path:
        return self.state / "cron" / "jobs.json"

    @property
    def cron_runs(self) -> Path:
        return self.state / "cron" / "runs"

    def cron_run_log(self, job_id: str) -> Path:
        return self.cron_runs / f"{job_id}.jsonl"

    @property
    def queue_dir(self) -> Path:
        return self.state / "delivery-queue"

    def queue_file(self, queue_id: str) -> Path:
        return self.queue_dir / f"{queue_id}.json"

    @property
    def memory_db(self) -> Path:
        return self.state / "memory" / f"{AGENT}.sqlite"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.jsonl"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    # --- workspace/ ----------------------------------------------------------
    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    def workspace_file(self, name: str) -> Path:
        return self.workspace / name

    @property
    def notes_dir(self) -> Path:
        return self.workspace / "memory"

    def daily_note(self, day: str) -> Path:
        return self.notes_dir / f"{day}.md"

    @property
    def attachments(self) -> Path:
        return self.workspace / "attachments"

    # --- helpers -------------------------------------------------------------
    def rel(self, path: Path) -> str:
        """The path as the oracle and the checker name it: relative to the root, with /."""
        return path.relative_to(self.root).as_posix()

    def memory_sources(self) -> list[Path]:
        """The files the memory indexer reads: the workspace notes and the daily notes."""
        found = [self.workspace_file(n) for n in WORKSPACE_FILES]
        if self.notes_dir.is_dir():
            found += sorted(self.notes_dir.glob("*.md"))
        return [p for p in found if p.exists()]

    def make_dirs(self) -> None:
        for d in (
            self.creds.parent,
            self.auth_profiles.parent,
            self.sessions_dir,
            self.cron_runs,
            self.queue_dir,
            self.memory_db.parent,
            self.logs,
            self.notes_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)
