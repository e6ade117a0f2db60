"""The formats an agent's files are checked against: JSON, JSONL and SQLite.

One check per format, each on a file by path, each returning None when the file
is usable or one line saying what is wrong. Both the capture (validation/capture.py,
after the agent resumed) and the restore test (ops/restore_validate.py) use
these, so a file is judged by the same rule when it is captured and when it is
restored, and the two verdicts can be compared.

    json    the whole file parses as JSON
    jsonl   every line that ends in a newline parses as JSON (blank lines are
            ignored); the last line may be anything when it has no newline: an
            append torn by a crash, which the agent truncates when it reads
    sqlite  `PRAGMA integrity_check` through src/cleancut/sqlitecheck.py's current SQLite

JSON nested deeper than the parser recurses is reported as a problem ("nested
too deeply to check"): neither good nor bad is known, and it is judged the same
way both times.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from cleancut import jsonparse
from cleancut.sqlitecheck import integrity_problems

JSON = "json"
JSONL = "jsonl"
SQLITE = "sqlite"
NONE = "none"  # a rule's way to say "do not check these"
KINDS = (JSON, JSONL, SQLITE)
SQLITE_MAGIC = b"SQLite format 3\x00"


def check_json(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    try:
        jsonparse.loads(data)
    except jsonparse.TooDeep:
        return "nested too deeply to check"
    except ValueError as exc:  # UnicodeDecodeError included
        return f"not valid JSON ({_first_line(exc)})"
    return None


def check_jsonl(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return jsonl_problem(f)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"


def jsonl_problem(lines: Iterable[bytes]) -> str | None:
    """The JSONL rule over a file's lines as binary iteration gives them (each ending in
    b"\\n" except possibly the last): None, or the first line that breaks it."""
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            return None  # the unterminated last line: a torn append is allowed
        if not line.strip():
            continue
        if b"\x00" in line:
            return f"NUL bytes in line {number}"  # blocks lost, not a torn append
        try:
            jsonparse.loads(line)
        except jsonparse.TooDeep:
            return f"line {number} is nested too deeply to check"
        except ValueError:
            return f"line {number} is not valid JSON"
    return None


def check_jsonl_from(path: Path, start: int) -> tuple[str | None, int]:
    """The JSONL rule over the lines of `path` from the line that holds byte `start - 1`
    on: a grown file whose first `start` bytes were already judged. Returns the problem
    (None: fine) and the offset the check began at (the start of that line; 0 when no
    newline precedes it, i.e. the whole file was read)."""
    try:
        with path.open("rb") as f:
            begin = _line_start(f, start)
            f.seek(begin)
            problem = jsonl_problem(f)
    except OSError as exc:
        return f"cannot read ({exc.strerror})", 0
    if problem is not None and begin:
        problem = f"{problem}, counting from byte {begin}"
    return problem, begin


def _line_start(f: BinaryIO, end: int, block: int = 1 << 16) -> int:
    """The offset just past the last newline before `end` (0 if there is none): where
    the line holding byte `end - 1` begins, or `end` itself after a newline."""
    pos = end
    while pos > 0:
        size = min(block, pos)
        f.seek(pos - size)
        at = f.read(size).rfind(b"\n")
        if at >= 0:
            return pos - size + at + 1
        pos -= size
    return 0


def check_sqlite(path: Path, *, read_only: bool) -> str | None:
    """read_only: the capture checks its staged copy without changing it (CHECK
    constraints are then skipped by SQLite); a restore test opens its sandbox copy
    read-write, as the agent would, so a restored WAL is applied and CHECKs verified."""
    return sqlite_problem(integrity_problems(str(path), read_only=read_only))


def sqlite_problem(problems: list[str]) -> str | None:
    """integrity_problems()'s list as the one line a verdict holds (None: fine)."""
    if not problems:
        return None
    if problems[0].startswith(("cannot open", "integrity_check failed")):
        return problems[0]
    return "integrity_check: " + "; ".join(problems[:3])


def check(kind: str, path: Path, *, read_only: bool) -> str | None:
    """The check of `kind` (one of KINDS) on `path`."""
    if kind == JSON:
        return check_json(path)
    if kind == JSONL:
        return check_jsonl(path)
    if kind == SQLITE:
        return check_sqlite(path, read_only=read_only)
    raise ValueError(f"unknown format {kind!r}")


def has_sqlite_header(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()
    return text[0][:200] if text else type(exc).__name__
