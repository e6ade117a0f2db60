"""The memory search index: a SQLite database in WAL mode, and the thread that feeds it.

Like OpenClaw's, it is a cache of the workspace notes: `files` (one row per
source file: hash, size, the source version it read), `chunks` (text pieces
with a fake embedding, the "vector table") and `chunks_fts` (full text). The
indexer runs on its own thread, debounced, upserting changed files in one
transaction; every few runs it does a full reindex instead, which builds a new
database and swaps the main file, `-wal` and `-shm` in by three separate
renames — the window a byte copy can fall into.

Each transaction updates `meta.last_wseq` to its own sequence number, and each
row carries the `wseq` of the write that made it, so a checker can match the
database's content to one committed transaction in the oracle.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .formats import digest, md_version, note_seqs
from .layout import Layout
from .oracle import OracleWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL,
    src_wseq INTEGER NOT NULL, wseq INTEGER NOT NULL, chunks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,
    embedding BLOB NOT NULL, wseq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path, idx);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, path UNINDEXED);
"""
CHUNK = 1024


def source_version(rel: str, data: bytes) -> int | None:
    """The wseq of the file version in `data` (a daily note: its last line), None if torn."""
    if rel.startswith("workspace/memory/"):
        seqs = note_seqs(data)
        return seqs[-1] if seqs else None
    return md_version(data)


def chunk(text: str) -> list[str]:
    pieces, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        size += len(line)
        if size >= CHUNK:
            pieces.append("".join(cur))
            cur, size = [], 0
    if cur:
        pieces.append("".join(cur))
    return pieces


def embed(text: str) -> bytes:
    """A fake 64-dimension float32 vector: deterministic, 256 bytes."""
    return hashlib.sha256(text.encode()).digest() * 8


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


class MemoryIndex:
    """The index database plus what the indexer knows of it (hash per source file)."""

    def __init__(self, layout: Layout, oracle: OracleWriter, files_lock: threading.Lock,
                 db: Path | None = None) -> None:
        """`db`: where the database lives when not at its place in the tree (journal mode
        keeps it outside); the oracle names it by its place in the tree either way."""
        self.layout = layout
        self.oracle = oracle
        self.files_lock = files_lock
        self.db = db if db is not None else layout.memory_db
        self.rel_db = layout.rel(layout.memory_db)
        self.generation = 0
        self.known: dict[str, str] = {}
        self.con: sqlite3.Connection | None = None
        self.runs = 0

    def create(self) -> None:
        """A fresh database, generation 1, holding every source file."""
        self.generation = 1
        self.con = connect(self.db)
        self.con.executescript(SCHEMA)
        self.commit(self.con, self._read_sources(), full=True)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def _read_sources(self) -> list[tuple[str, bytes]]:
        """Read the notes under the files lock: never a file halfway through a rewrite."""
        with self.files_lock:
            out = []
            for path in self.layout.memory_sources():
                with contextlib.suppress(FileNotFoundError):
                    out.append((self.layout.rel(path), path.read_bytes()))
            return out

    def sync(self) -> int:
        """Upsert the files whose hash changed; the number of files upserted."""
        assert self.con is not None
        changed = [(r, d) for r, d in self._read_sources() if self.known.get(r) != digest(d)]
        if changed:
            self.commit(self.con, changed, full=False)
        self.runs += 1
        return len(changed)

    def commit(self, con: sqlite3.Connection, sources: list[tuple[str, bytes]],
               full: bool) -> None:
        """Index `sources` (path, content) in one transaction on `con`, noted in the oracle
        first; `full` replaces every row (a reindex into a new database)."""
        rows: dict[str, int] = {}
        planned = []
        for rel, data in sources:
            version = source_version(rel, data)
            if version is None:
                continue  # cannot happen under the files lock; never index a torn file
            h = digest(data)
            seq = self.oracle.add("row", self.rel_db, [version], k=rel, h=h, src=version)
            rows[rel] = seq
            planned.append((rel, data, h, version, seq))
        tx = self.oracle.add("tx", self.rel_db, g=self.generation, rows=rows, full=full)
        con.execute("BEGIN IMMEDIATE")
        try:
            for rel, data, h, version, seq in planned:
                pieces = chunk(data.decode())
                con.execute("DELETE FROM chunks WHERE path = ?", (rel,))
                con.execute("DELETE FROM chunks_fts WHERE path = ?", (rel,))
                con.execute(
                    "INSERT OR REPLACE INTO files(path, hash, size, src_wseq, wseq, chunks) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (rel, h, len(data), version, seq, len(pieces)),
                )
                for i, text in enumerate(pieces):
                    cur = con.execute(
                        "INSERT INTO chunks(path, idx, text, embedding, wseq) VALUES (?,?,?,?,?)",
                        (rel, i, text, embed(text), seq),
                    )
                    con.execute(
                        "INSERT INTO chunks_fts(rowid, text, path) VALUES (?, ?, ?)",
                        (cur.lastrowid, text, rel),
                    )
            con.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("generation", self.generation), ("last_wseq", tx)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if full:
            self.known = {}
        for rel, _, h, _, _ in planned:
            self.known[rel] = h

    def reindex(self) -> None:
        """Build a new database beside the old one and swap it in by three renames."""
        db = self.db
        tmp = db.with_name(f"{db.name}.{os.getpid()}.tmp")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{suffix}")
        builder = connect(tmp)
        builder.execute("PRAGMA wal_autocheckpoint=0")  # keep the new pages in its -wal
        builder.executescript(SCHEMA)
        self.generation += 1
        self.commit(builder, self._read_sources(), full=True)
        self.close()  # the old database's last connection: SQLite checkpoints and drops its -wal
        os.rename(tmp, db)
        os.rename(f"{tmp}-wal", f"{db}-wal")
        os.rename(f"{tmp}-shm", f"{db}-shm")
        builder.close()
        self.con = connect(db)
        self.runs += 1


class Indexer:
    """Runs the index on its own thread, `debounce` seconds after the first change it hears of.

    A busy agent changes its notes all the time, so this fires at most every
    `debounce` seconds rather than waiting for quiet. Each run is a turn.
    """

    def __init__(self, index: MemoryIndex, turn: Callable[[], contextlib.AbstractContextManager],
                 debounce: float, reindex_every: int, stop: threading.Event) -> None:
        self.index = index
        self.turn = turn
        self.debounce = debounce
        self.reindex_every = reindex_every
        self.stop = stop
        self._cond = threading.Condition()
        self._dirty_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="sim-indexer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def notify(self) -> None:
        with self._cond:
            if self._dirty_at is None:
                self._dirty_at = time.monotonic()
                self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        while not self.stop.is_set():
            with self._cond:
                while not self.stop.is_set():
                    if self._dirty_at is not None:
                        left = self._dirty_at + self.debounce - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait(0.5)
                if self.stop.is_set():
                    return
                self._dirty_at = None
            with self.turn():
                if self.stop.is_set():
                    return
                runs = self.index.runs + 1
                if self.reindex_every and runs % self.reindex_every == 0:
                    self.index.reindex()
                else:
                    self.index.sync()
