"""The one interface the hot-backup orchestrator uses to pause an agent, and its registry.

An agent runtime is whatever answers at an `--agent` address: an agent speaking
protocol v1 on a Unix socket (`unix:PATH`), an OpenClaw gateway
(`openclaw://HOST:PORT`). The orchestrator (hot/session.py) knows only this
interface: connect, quiesce, flush, in-flight, renew, resume, close. It owns the
budget (every call gets a timeout that is a deadline), the background renewal, the
horizon and the pause; a runtime only translates each step into its agent's terms.

A new runtime is a new file with a subclass of AgentRuntime, named in RUNTIMES by its
address prefix.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleancut.errors import UsageError

# Address prefix -> "module:class", imported only when used.
RUNTIMES = {
    "unix:": "cleancut.hot.protocol_v1:ProtocolV1Runtime",
    "openclaw://": "cleancut.hot.openclaw:OpenClawRuntime",
}


class LeaseLost(Exception):
    """A renewal failed: `answered` is True when the agent said so, False when it was silent
    or the connection broke."""

    def __init__(self, reason: str, answered: bool) -> None:
        super().__init__(reason)
        self.answered = answered


@dataclass
class RuntimeContext:
    """What a runtime may need beyond its address: the source being captured, and
    where a credential comes from (never the command line)."""

    source: Path | None = None
    token_file: Path | None = None
    # A source of several named directories (then `source` is None): name -> directory.
    dirs: dict[str, Path] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class AgentRuntime(ABC):
    """One connection to one agent, for one quiesce session."""

    # Whether the orchestrator waits out the external-consistency horizon by polling
    # inflight(). A runtime whose quiesce already waits for its actions to settle says no.
    polls_horizon: bool = True
    # Whether inflight_settled() can wait on the agent's side for its actions to settle
    # (protocol v1's `inflight_wait` capability): set by connect() from what the agent says.
    waits_horizon: bool = False

    @abstractmethod
    def connect(self, timeout: float) -> dict[str, Any]:
        """Connect and greet; returns what to record about the agent (name, protocol...)."""

    def peer_pid(self) -> int | None:
        """The agent's process id, when the transport tells it (for --fallback frozen)."""
        return None

    @abstractmethod
    def quiesce(self, timeout: float, lease: float) -> None:
        """Ask the agent to pause and wait until it has; QuiesceMissed when it does not."""

    @abstractmethod
    def flush(self, timeout: float) -> dict[str, Any]:
        """Have what the agent holds in memory reach disk; QuiesceMissed when it cannot.
        May answer `journal_seq`."""

    @abstractmethod
    def inflight(self, timeout: float) -> list[dict[str, Any]]:
        """The external actions not settled (key, kind, state, since)."""

    def inflight_settled(self, wait: float, timeout: float) -> list[dict[str, Any]]:
        """The external actions not settled, answered once none is intent or started or
        `wait` seconds have passed. Only called when waits_horizon is True."""
        raise NotImplementedError(f"{type(self).__name__} cannot wait for its actions")

    @abstractmethod
    def renew(self, timeout: float, lease: float) -> None:
        """Extend the lease; LeaseLost when it no longer holds."""

    # True when renew_then_resume() can send the lease proof and the resume back to back.
    pipelines_resume: bool = False

    def renew_then_resume(self, timeout: float, lease: float, sent: Callable[[], None]) -> bool:
        """The lease proof after the capture and the resume, sent together: the agent
        answers the renew and resumes at once, without waiting for the backup side to
        read that answer first. Calls `sent` once both are on their way; LeaseLost as
        renew(). True when the resume was answered too (else the caller resumes again).
        Only called when pipelines_resume is True."""
        raise NotImplementedError(f"{type(self).__name__} cannot pipeline its resume")

    def renew_every(self, lease: float) -> float:
        """How often the background renewer renews."""
        return lease / 3

    @abstractmethod
    def resume(self, timeout: float) -> None:
        """Let the agent run again. Errors are the caller's to ignore."""

    def expected_change(self, rel: str, staged: Path) -> bool:
        """Whether a change of `rel` in the source after the capture is the agent's
        normal life while paused rather than a broken promise (see changed_since_capture)."""
        return False

    def captured_inflight(self, tree: Path) -> list[dict[str, Any]] | None:
        """The in-flight actions as the captured state holds them; None when the agent
        reported them itself (inflight())."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Drop the connection (for a protocol v1 agent this alone also resumes it)."""


def open_runtime(address: str, context: RuntimeContext | None = None) -> AgentRuntime:
    """The runtime for an --agent address."""
    for prefix, target in RUNTIMES.items():
        if address.startswith(prefix):
            module, _, name = target.partition(":")
            cls = getattr(importlib.import_module(module), name)
            return cls(address, context or RuntimeContext())
    raise UsageError(
        f"--agent {address}: expected unix:PATH (a Unix socket path) or openclaw://HOST:PORT"
    )
