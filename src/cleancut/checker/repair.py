"""`repair index` and `repair packs` as runs: each under the repository's one lock.

Both rewrite index segments, so neither may run beside a prune (or beside each
other): each takes the lock prune takes (locks/prune), and `repair packs` checks it
is still held before every deletion. The outcome of each is what the command prints
and the exit code it ends with (4 when damage remains).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cleancut.errors import ExitCode
from cleancut.repository.repository import Repository

from .heal import HealReport, repair_packs


@dataclass
class ReindexOutcome:
    """What `repair index` did (Repository.reindex_from_packs's counts: packs_reindexed,
    damaged_segments_removed, unreadable_packs and the cache rebuild's), and the size of
    the index after it (blobs, packs, stored_bytes)."""

    result: dict[str, int]
    counts: dict[str, int]

    @property
    def unreadable_packs(self) -> int:
        return self.result["unreadable_packs"]

    @property
    def exit_code(self) -> int:
        """4 when a damaged pack could not be indexed from its header."""
        return ExitCode.INTEGRITY if self.unreadable_packs else ExitCode.OK

    def to_json(self) -> dict[str, int]:
        return {**self.result, **self.counts}


def repair_index(repo: Repository) -> ReindexOutcome:
    """Index every pack no readable segment covers, from its own header; drop damaged
    segments. Under the lock: never beside a prune, which rewrites segments too."""
    lock = repo.acquire_lock("repair index")
    try:
        result = repo.reindex_from_packs()
    finally:
        lock.release()
    return ReindexOutcome(result, repo.index_counts())


def repair_damaged_packs(repo: Repository, sources: list[Path]) -> HealReport:
    """Replace the packs `check` found damaged (checker/heal.py), under the lock."""
    lock = repo.acquire_lock("repair packs")
    try:
        return repair_packs(repo, sources, lock.check)
    finally:
        lock.release()
