"""A restore test's `validate` step: the restored files an agent depends on still usable.

Each file of the snapshot that the source's `validate` rules (validation/rules.py)
give a format is checked as restored, with the same checks the capture used
(validation/formats.py). SQLite databases are opened read-write, as the agent would
open them, so a restored WAL or hot journal is applied first, exactly as on a real
restore, and CHECK constraints are verified.

A file that fails is then compared with its capture-time verdict
(repository/verdicts.py): if the capture found the very same content (the node records
the metadata the capture checked) invalid already, as JSON5 with comments under a
`.json` name, binary data, or a log with plain-text lines, the restore did not
break it and the drill does not fail; it is reported as invalid at capture. A file
that was valid at capture, or that no capture judged (snapshots older than capture
checks, plain backups), fails the step. Files missing from disk are left to verify.
"""

from __future__ import annotations

import functools
from pathlib import Path

from cleancut.repository.state import State
from cleancut.repository.tree import FILE
from cleancut.repository.verdicts import Verdicts
from cleancut.validation.formats import KINDS, check, has_sqlite_header
from cleancut.validation.rules import Rules


def validate_restored(
    state: State, root: Path, rules: Rules, verdicts: Verdicts | None
) -> tuple[list[str], str, list[str]]:
    """(problems, summary, files invalid at capture as well: not problems)."""
    problems: list[str] = []
    known: list[str] = []
    counts = dict.fromkeys(KINDS, 0)
    for rel in sorted(state):
        node = state[rel]
        if node.type != FILE:
            continue
        path = root / rel
        if not path.is_file() or path.is_symlink():
            continue
        kind = rules.kind_of(rel, functools.partial(has_sqlite_header, path))
        if kind is None:
            continue
        counts[kind] += 1
        problem = check(kind, path, read_only=False)
        if problem is None:
            continue
        if verdicts is not None and verdicts.invalid_at_capture(rel, node, kind) is not None:
            known.append(f"{rel}: {problem}")
            continue
        problems.append(f"{rel}: {problem}{_at_capture(verdicts, rules, rel)}")
    summary = ", ".join(f"{n} {kind.upper() if kind != 'sqlite' else 'SQLite'}"
                        for kind, n in counts.items()) + " files checked"
    if known:
        summary += f"; {len(known)} invalid at capture already (not a failure)"
    return problems, summary, known


def _at_capture(verdicts: Verdicts | None, rules: Rules, rel: str) -> str:
    """What the capture said of a file that fails now, for the problem line."""
    if verdicts is None or verdicts.rules != rules.digest:
        return ""  # not judged, or judged under other rules
    if rel in verdicts.files:
        return " (the capture judged other content or another format)"
    if verdicts.invalid > len(verdicts.files):
        return ""  # past the record's limit: not known
    return " (valid at capture)"
