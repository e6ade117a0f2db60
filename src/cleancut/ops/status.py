"""`status` as a run: the health of each source (health.py), and the exit code it means.

Each source is judged against the profile it is backed up with (settings/run_settings.py):
its own in the config file, else the config file's shared settings, else the
repository's. The state is the exit code only when asked (--check, for monitoring):
0 ok, 3 warn, 4 critical, and an empty repository counts as critical there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleancut import clock
from cleancut.errors import ExitCode, UsageError
from cleancut.repository.repository import Repository
from cleancut.settings.config_file import ConfigFile
from cleancut.settings.run_settings import source_profiles

from .health import CRITICAL, OK, WARN, SourceHealth, overall_state, source_health

CHECK_EXIT = {OK: ExitCode.OK, WARN: ExitCode.WARNINGS, CRITICAL: ExitCode.INTEGRITY}


@dataclass
class StatusOutcome:
    time: datetime
    sources: list[SourceHealth]
    check: bool  # --check: the state is the exit code

    @property
    def state(self) -> str:
        """The worst source's state; critical when there is no source at all."""
        return overall_state(self.sources) if self.sources else CRITICAL

    @property
    def exit_code(self) -> int:
        return CHECK_EXIT[self.state] if self.check else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "time": clock.iso(self.time),
            "state": self.state,
            "sources": [s.to_json() for s in self.sources],
        }


def status(
    repo: Repository, config: ConfigFile, now: datetime, source: str | None, check: bool
) -> StatusOutcome:
    """The health of every source (or of `source` only, which must be known)."""
    default, profiles = source_profiles(config, repo.config.profile)
    sources = source_health(repo, now, profiles, default)
    if source is not None:
        sources = [s for s in sources if s.name == source]
        if not sources:
            raise UsageError(f"no snapshot or backup attempt of source {source!r}")
    return StatusOutcome(now, sources, check)
