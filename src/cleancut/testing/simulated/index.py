"""Reading a copy's memory index: does it open, pass integrity, and hang together?

The database is opened from a scratch copy of the main file and its `-wal` (a
restore would do the same; the `-shm` is rebuilt by SQLite). A `-wal` from
another moment than its database cannot be told apart by a header field (the
main file records no WAL salt), so it is caught by what it does: the pages mix
two moments, and either `integrity_check` fails or the content stops hanging
together — a files row whose chunks carry another write's sequence number, a
row newer than the transaction the meta table says is the last, or (with the
oracle) a table that is not the state after any committed transaction.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    hash: str
    size: int
    src_wseq: int
    wseq: int
    chunks: int


@dataclass
class IndexState:
    generation: int
    last_wseq: int
    files: dict[str, Row]


def read_index(db: Path, problems: list[str], label: str,
               quiesced: bool = True) -> IndexState | None:
    """The index's content, or None (with a problem noted) when it cannot be trusted.

    Not quiesced, a main file without tables and without a -wal is accepted: it
    is the instant between the first and second rename of a reindex swap.
    """
    wal = Path(f"{db}-wal")
    if not db.exists():
        if wal.exists():
            problems.append(f"{label}-wal: present without its database")
        else:
            problems.append(f"{label}: memory index missing")
        return None
    with tempfile.TemporaryDirectory(prefix="simcheck-") as tmp:
        copy = Path(tmp) / "index.sqlite"
        shutil.copyfile(db, copy)
        if wal.exists():
            shutil.copyfile(wal, f"{copy}-wal")
        try:
            con = sqlite3.connect(copy)
        except sqlite3.Error as exc:
            problems.append(f"{label}: does not open ({exc})")
            return None
        try:
            swapping = not quiesced and not wal.exists()
            return _read(con, problems, label, swapping)
        except sqlite3.Error as exc:
            problems.append(f"{label}: cannot be read ({exc}); a -wal from another moment?")
            return None
        finally:
            con.close()


def _read(con: sqlite3.Connection, problems: list[str], label: str,
          swapping: bool) -> IndexState | None:
    found = [str(r[0]) for r in con.execute("PRAGMA integrity_check").fetchall()]
    if found != ["ok"]:
        detail = "; ".join(found[:3]).replace("\n", "; ")
        problems.append(f"{label}: integrity_check failed: {detail}")
        return None
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "files", "chunks", "chunks_fts"} <= tables:
        if swapping and not tables:
            return None
        problems.append(f"{label}: tables missing ({sorted(tables)}): a main file without "
                        "its own -wal?")
        return None
    try:
        con.execute("INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check')")
    except sqlite3.Error as exc:
        problems.append(f"{label}: full-text index does not match its table ({exc})")
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if "generation" not in meta or "last_wseq" not in meta:
        problems.append(f"{label}: meta table incomplete ({meta})")
        return None
    files = {
        path: Row(h, size, src, wseq, n)
        for path, h, size, src, wseq, n in con.execute(
            "SELECT path, hash, size, src_wseq, wseq, chunks FROM files")
    }
    state = IndexState(int(meta["generation"]), int(meta["last_wseq"]), files)
    chunks = {
        path: (count, low, high)
        for path, count, low, high in con.execute(
            "SELECT path, count(*), min(wseq), max(wseq) FROM chunks GROUP BY path")
    }
    fts = dict(con.execute("SELECT path, count(*) FROM chunks_fts GROUP BY path").fetchall())
    for path, row in files.items():
        if row.wseq > state.last_wseq:
            problems.append(f"{label}: row {path} (wseq {row.wseq}) is newer than the last "
                            f"transaction (meta.last_wseq {state.last_wseq}): pages from two "
                            "moments")
        got = chunks.get(path, (0, None, None))
        if got != (row.chunks, row.wseq, row.wseq) and not (row.chunks == 0 and got[0] == 0):
            problems.append(f"{label}: chunks of {path} {got} do not match its files row "
                            f"({row.chunks} chunks, wseq {row.wseq}): pages from two moments")
        if fts.get(path, 0) != row.chunks:
            problems.append(f"{label}: full-text rows of {path} ({fts.get(path, 0)}) do not "
                            f"match its {row.chunks} chunks")
    for path in set(chunks) - set(files):
        problems.append(f"{label}: chunks of {path} without a files row")
    return state
