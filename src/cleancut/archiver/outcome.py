"""A backup's outcome: its JSON summary and the exit code it ends with.

A plain backup ends 0, or 3 when the snapshot was written with warnings (files
skipped or changed while read). A hot backup (hot/) also ends 7 when
the agent missed quiesce and a fallback snapshot was stored instead, and 19 when
that miss was the agent breaking the protocol or its promise; these win over 3.
The hot result is read through `HotReport`, its shape, so the store needs no import
of hot backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cleancut.errors import ExitCode

from .backup import BackupResult


class HotReport(Protocol):
    """What a hot backup's result says beyond the snapshot (hot.options.HotResult)."""

    backup: BackupResult | None
    quiesce_missed: bool
    misbehaved: bool

    def summary(self) -> dict[str, Any]: ...


@dataclass
class BackupOutcome:
    result: BackupResult
    hot: HotReport | None = None  # None: a plain backup

    @classmethod
    def of_hot(cls, hot: HotReport) -> BackupOutcome:
        """A hot backup that stored a snapshot (a quiesced one, or a fallback)."""
        assert hot.backup is not None
        return cls(hot.backup, hot)

    @property
    def exit_code(self) -> int:
        if self.hot is not None and self.hot.misbehaved:
            return ExitCode.AGENT_MISBEHAVED
        if self.hot is not None and self.hot.quiesce_missed:
            return ExitCode.QUIESCE_MISSED
        return ExitCode.WARNINGS if self.result.warnings else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return self.hot.summary() if self.hot is not None else self.result.summary()
