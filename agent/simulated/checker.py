"""The invariant checker: is a copy of the simulated agent's tree a consistent snapshot?

It holds the copy to every rule of "What a consistent snapshot satisfies"
(shared/agent-workspace.md) and returns one line per violation; an empty list
means consistent. Without an oracle it checks what the copy alone can show;
with the oracle it also checks the cut (visible writes closed under
dependencies), the index against committed transactions, and the notes
against the versions the agent wrote.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from . import cut, rules
from .oracle import Oracle
from .snapshot import load_snapshot


def check_workspace(root: Path, oracle: Path | None = None,
                    inflight_ok: Collection[str] = frozenset(),
                    quiesced: bool = True) -> list[str]:
    """Violations found in the copy at `root` (the directory holding state/ and workspace/).

    `inflight_ok`: ledger keys the backup recorded as in flight (allowed to be
    unsettled in a quiesced copy). `quiesced=False` holds the copy to the
    crash-consistent standard instead (any single instant of the agent).
    """
    snap = load_snapshot(Path(root), quiesced)
    found = list(snap.problems)
    found += rules.check_sessions(snap)
    found += rules.check_tools(snap)
    found += rules.check_ledger(snap, set(inflight_ok))
    found += rules.check_queue(snap)
    found += rules.check_cron(snap)
    found += rules.check_credentials(snap)
    found += rules.check_memory(snap)
    if oracle is not None:
        truth = Oracle.load(Path(oracle))
        found += cut.check_index_history(snap, truth)
        found += cut.check_index_versions(snap, truth)
        found += cut.check_notes(snap, truth)
        found += cut.check_cut(snap, truth)
    return found
