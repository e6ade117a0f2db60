"""Journal mode: the simulated agent writes its whole tree through the SDK's journal.

`run --journal DIR` opens `cleancut.sdk.journal_writer.Journal(DIR, root)` and every
mutation of the tree (root = the directory holding state/ and workspace/) goes
through it, durable before it is applied:

| default mode (diskio.py)            | journal mode                               |
|-------------------------------------|--------------------------------------------|
| atomic replace (tmp, fsync, rename) | `put`                                      |
| append, no fsync                    | `append`                                   |
| rewrite in place (truncate, write)  | `put`                                      |
| the `.bak` ring: renames, copy      | `rename`s and a `put`                      |
| delivery acknowledge: rename, delete | `rename` and `delete`                     |
| lock sidecars (`*.lock`)            | none (below)                               |
| the ledger's fsync'd lines          | `append`, through `JournalLedger`          |
| the SQLite memory index             | not journaled: kept outside the tree       |
| directories                         | `mkdir`                                    |

Lock sidecars are skipped: they exist so that processes sharing the files do
not write one file at once, and in journal mode every write is a whole record,
serialized by the journal (one process holds it: its lock file). Journaling
them would only add records that create and delete a file nobody reads.

Grouping. Each write is one record, except where the agent-workspace model
makes a logical step atomic; those are one transaction (one record), so no
journal state shows them half done:

- the end of a turn: the final assistant message, the turn marker and the
  sessions.json rewrite that counts it;
- a delivery's receipt and its acknowledge (ledger receipt, rename to
  `.delivered`, delete): the queue file is never seen with its receipt, nor a
  `.delivered` left over;
- a credential refresh (creds.json and auth-profiles.json);
- a config edit (openclaw.json and the whole `.bak` ring rotation and copy).

A ledger intent or start is never grouped with what follows it: it must be
durable before the external action it announces.

The memory index is SQLite, which writes pages in place: it cannot be
journaled at file level. In journal mode it lives outside the tree (by default
beside the journal directory, `<DIR>-index/main.sqlite`), is rebuilt from the
notes when the agent starts, and is therefore absent from every journal state;
the checker skips the index rules when the oracle says the agent journaled.
That is a limitation of the simulated agent's journal mode, not of the
journal: a real agent would journal its index's logical changes, or rebuild it.

The oracle notes, with each write, the journal record it goes into (`j`): the
note is written inside the record's transaction, where the next sequence number
is fixed. Ledger transitions the SDK holds while quiesced get no `j`: they are
written at the next flush or resume, in a record of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cleancut.sdk.journal_writer import Journal
from cleancut.sdk.ledger import Ledger

from .layout import Layout


class JournalWrites:
    """The agent's ways of writing, as journal operations on paths relative to the root."""

    journaled = True

    def __init__(self, journal: Journal, layout: Layout) -> None:
        self.journal = journal
        self.layout = layout

    def _p(self, path: Path) -> str:
        return self.layout.rel(path)

    @contextlib.contextmanager
    def step(self) -> Iterator[int | None]:
        """Group the writes of the block into one record; yields its sequence number.

        Nested steps join the outer one. While the block runs the journal is the
        agent's alone, so the number is exact (if the block writes nothing, no
        record is made and the number goes to the next write).
        """
        with self.journal.transaction():
            yield self.journal.last_seq + 1

    def replace(self, path: Path, data: bytes) -> None:
        self.journal.put(self._p(path), data, 0o600)  # the mode atomic_replace's temp file has

    def rewrite(self, path: Path, data: bytes) -> None:
        self.journal.put(self._p(path), data)

    def copy(self, data: bytes, dst: Path) -> None:
        self.journal.put(self._p(dst), data)

    def append(self, path: Path, data: bytes) -> None:
        self.journal.append(self._p(path), data)

    def rename(self, src: Path, dst: Path) -> None:
        self.journal.rename(self._p(src), self._p(dst))

    def unlink(self, path: Path) -> None:
        self.journal.delete(self._p(path))

    def lock(self, path: Path) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def forget(self, path: Path) -> None:
        pass

    def make_dirs(self, layout: Layout) -> None:
        """The tree's directories (one record for those missing), all but the index's."""
        with self.journal.transaction():
            for d in journal_dirs(layout):
                self.journal.mkdir(self._p(d))

    def flush(self) -> None:
        pass  # every record is durable before it is applied

    def close(self) -> None:
        pass  # the journal is closed by its owner, after the ledger


def journal_dirs(layout: Layout) -> list[Path]:
    return [
        layout.creds.parent,
        layout.auth_profiles.parent,
        layout.sessions_dir,
        layout.cron_runs,
        layout.queue_dir,
        layout.logs,
        layout.notes_dir,
    ]


class JournalLedger(Ledger):
    """The SDK's ledger, its lines appended through the journal instead of its own fsync.

    Locks: every call that writes (or holds) takes the journal first, then the
    ledger's own lock, the order the agent's threads use too (a transaction,
    then a ledger transition inside it); the other order would deadlock a
    receipt arriving on the settler thread against a turn's transaction.
    """

    def __init__(self, path: Path, journal: Journal, rel: str) -> None:
        self._journal = journal
        self._rel = rel
        journal.append(rel, b"")  # create it through the journal (no record if it exists)
        super().__init__(path)  # opens the file, now existing: nothing changes behind the journal

    @property
    def held(self) -> bool:
        """Transitions are kept in memory (quiesced); stable inside a journal transaction."""
        return self._held

    def _write(self, data: bytes) -> None:
        self._journal.append(self._rel, data)

    def _transition(self, key: str, state: str, new: bool = False, **fields: Any) -> bool:
        with self._journal.transaction():
            return super()._transition(key, state, new, **fields)

    def hold(self) -> None:
        with self._journal.transaction():
            super().hold()

    def write_pending(self) -> None:
        with self._journal.transaction():
            super().write_pending()

    def release(self) -> None:
        with self._journal.transaction():
            super().release()
