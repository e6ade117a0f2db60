"""The invariant checker: is a copy of the simulated agent's tree a consistent snapshot?

It holds the copy to every rule of "What a consistent snapshot satisfies"
(docs/simulated-agent.md) and returns one line per violation; an empty list
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
                    quiesced: bool = True, *, journaled: bool = False,
                    journal_seq: int | None = None,
                    expect_index: bool | None = None) -> list[str]:
    """Violations found in the copy at `root` (the directory holding state/ and workspace/).

    `inflight_ok`: ledger keys the backup recorded as in flight (allowed to be
    unsettled in a quiesced copy). `quiesced=False` holds the copy to the
    crash-consistent standard instead (any single instant of the agent).

    Journal mode (journalio.py): `journaled` says the copy is a journal state
    (a record boundary): crash-consistent, but every write whole. With
    `journal_seq` N (and the oracle) the copy must be exactly the state at
    record N: every write the oracle puts in a record up to N is visible, none
    after. `expect_index` defaults to what the oracle says: an agent in journal
    mode keeps its memory index outside the tree, so its absence is no fault.
    """
    truth = Oracle.load(Path(oracle)) if oracle is not None else None
    if expect_index is None:
        expect_index = truth is None or "journal" not in truth.header
    snap = load_snapshot(Path(root), quiesced, expect_index, journaled)
    found = list(snap.problems)
    found += rules.check_sessions(snap)
    found += rules.check_tools(snap)
    found += rules.check_ledger(snap, set(inflight_ok))
    found += rules.check_queue(snap)
    found += rules.check_cron(snap)
    found += rules.check_credentials(snap)
    found += rules.check_memory(snap)
    if truth is not None:
        found += cut.check_index_history(snap, truth)
        found += cut.check_index_versions(snap, truth)
        found += cut.check_notes(snap, truth)
        found += cut.check_cut(snap, truth)
        if journal_seq is not None:
            found += cut.check_journal_seq(snap, truth, journal_seq)
    return found
