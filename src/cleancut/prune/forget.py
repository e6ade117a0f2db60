"""`forget` as a run: plan which snapshots go, delete their records, and prune if asked.

The plan is retention.py's: the snapshots named (`forget SNAPSHOT_ID...`), else the
keep rules under the incremental retention of the profile given (default: the
repository's). A prune asked for with it (--prune) runs after the deletion; when it
cannot run (a lock, an append-only repository) what forget did still stands and is
reported, and the run ends with the prune's exit code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cleancut import clock
from cleancut.errors import CleancutError, ExitCode, UsageError
from cleancut.journal.repo.compact import RetentionFor
from cleancut.repository.repository import Repository
from cleancut.settings.profiles import get_profile

from .prune import PruneReport, prune
from .retention import KeepRules, Verdict, forget_snapshots, plan_forget, plan_named


@dataclass
class ForgetOutcome:
    verdicts: list[Verdict]  # one per snapshot considered, kept or not, with the reasons
    dry_run: bool
    gone: list[str] = field(default_factory=list)  # ids whose records were deleted
    prune: PruneReport | None = None
    prune_error: CleancutError | None = None  # why the prune asked for did not run

    @property
    def forgotten(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.keep]

    @property
    def exit_code(self) -> int:
        return self.prune_error.exit_code if self.prune_error else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "snapshots": [
                {
                    "id": v.snapshot.id,
                    "name": v.snapshot.name,
                    "time": v.snapshot.time,
                    "kind": v.snapshot.kind,
                    "chain": v.snapshot.chain,
                    "seq": v.snapshot.seq,
                    "keep": v.keep,
                    "reasons": v.reasons,
                }
                for v in self.verdicts
            ],
            "forgotten": [v.snapshot.id for v in self.forgotten] if self.dry_run else self.gone,
            "prune": self.prune.to_json() if self.prune else None,
            "prune_error": str(self.prune_error) if self.prune_error else None,
        }


def forget(
    repo: Repository,
    snapshot_ids: list[str],
    rules: KeepRules,
    name: str | None = None,
    profile: str | None = None,
    dry_run: bool = False,
    then_prune: bool = False,
    journal_retention: RetentionFor | None = None,
) -> ForgetOutcome:
    """Forget the snapshots named, else those no rule keeps (of source `name` only, if
    given); then prune, unless this is a dry run."""
    try:
        settings = get_profile(profile or repo.config.profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    snaps = [s for s in repo.snapshots() if name is None or s.name == name]
    verdicts = (
        plan_named(snaps, snapshot_ids)
        if snapshot_ids
        else plan_forget(snaps, rules, clock.now(), settings.incremental_retention)
    )
    outcome = ForgetOutcome(verdicts, dry_run)
    if dry_run:
        return outcome
    outcome.gone = forget_snapshots(repo, [v.snapshot for v in outcome.forgotten])
    if then_prune:
        try:
            outcome.prune = prune(repo, journal_retention=journal_retention)
        except CleancutError as exc:  # what forget did is still reported
            outcome.prune_error = exc
    return outcome
