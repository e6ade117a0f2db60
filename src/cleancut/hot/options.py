"""What a hot backup is asked to do (HotOptions) and what it reports (HotResult).

Kept apart from the orchestrator so the command line can build the options and read
the result of a plain backup without importing the hot-backup machinery (staging,
agent control, the journal) that only a hot backup runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut.archiver.backup import BackupResult
from cleancut.errors import UsageError
from cleancut.settings.config_file import FALLBACKS
from cleancut.validation.rules import DEFAULT_RULES, Rules

DEFAULT_HOOK_TIMEOUT = 60.0
DEFAULT_FREEZE_WATCHDOG = 60.0


@dataclass
class HotOptions:
    agent: str | None = None  # unix:PATH or openclaw://HOST:PORT (hot/runtime.py)
    agent_token_file: Path | None = None  # a runtime's credential, never on the command line
    quiesce_timeout: float = 60.0
    horizon: float = 60.0
    lease: float = 10.0
    fallback: str = "none"
    freeze_pid: int | None = None
    pre: str | None = None
    post: str | None = None
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    watchdog: float = DEFAULT_FREEZE_WATCHDOG
    staging: Path | None = None
    alert_command: str | None = None
    journal: Path | None = None  # the agent's journal directory (the `journal` fallback)
    formats: Rules = DEFAULT_RULES  # which captured files are checked, and as what (validate)

    @property
    def mode(self) -> str | None:
        if self.agent:
            return "agent"
        if self.freeze_pid is not None:
            return "freeze"
        if self.pre or self.post:
            return "hooks"
        return None

    def validate(self) -> None:
        if self.fallback not in FALLBACKS:
            raise UsageError(f"--fallback {self.fallback}: choose one of {', '.join(FALLBACKS)}")
        if self.agent and (self.pre or self.post):
            raise UsageError("choose one capture mode: --agent or --pre/--post")
        if self.freeze_pid is not None and (self.pre or self.post):
            raise UsageError("choose one capture mode: --freeze or --pre/--post")
        if self.fallback != "none" and not self.agent:
            raise UsageError("--fallback applies to --agent backups (what to do on a quiesce miss)")
        if self.fallback == "journal" and self.journal is None:
            raise UsageError("--fallback journal needs --journal DIR (the agent's journal)")


@dataclass
class HotResult:
    backup: BackupResult | None
    capture: dict[str, Any]
    quiesce_missed: bool = False
    miss_reason: str | None = None
    misbehaved: bool = False  # the miss was the agent breaking the protocol or its promise
    alerts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = self.backup.summary() if self.backup else {"snapshot_id": None}
        out.update(
            consistency=self.capture.get("consistency"),
            pause_ms=self.capture.get("pause_ms"),
            steps_ms=self.capture.get("steps_ms", {}),
            inflight=self.capture.get("inflight", []),
            quiesce_missed=self.quiesce_missed,
            miss_reason=self.miss_reason,
            capture=self.capture,
            alerts=self.alerts,
        )
        validation = self.backup.snapshot.validation if self.backup else None
        if validation:  # the counts and the invalid files' names; the record has the rest
            out["validation"] = {k: v for k, v in validation.items() if k != "files"}
            out["validation"]["invalid_files"] = sorted(validation.get("files", {}))[:100]
        return out
