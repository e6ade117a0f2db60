"""An agent's vector index on disk (sqlite-vec), backup-ready.

    index = VectorIndex(workspace / "memory.sqlite", hashed_embedding(64), 64, server=server)
    index.add("t1/4/remember", "the user prefers tea")      # inside a turn (a graph step)
    index.query("what does the user drink?", k=3)

One SQLite file holds each memory's text and its vector (a `vec0` table of
sqlite-vec, keyed by the memory's rowid), written in one transaction, so a
memory is never in the index without its vector or the other way round. The
agent keeps its own record of the memories (a LangGraph state channel, a
file); writing the index inside the same turn as that record makes a hot
backup capture an index that agrees with the records: the adapter cuts only
between turns (super-steps). Every `add` is a committed transaction, fsynced
(WAL mode, synchronous=FULL, as the LangGraph SQLite checkpointer does), so at
a turn boundary the index is durable and `flush` has nothing to write; with
`truncate_wal=True` it also moves the WAL into the database file.

`add` is an upsert by key: a step that runs again (after a crash, a restore, an
interrupt) writes the same memory, not a second one.

The embedding is the agent's: any function from text to `dim` floats. The
`hashed_embedding` here is deterministic and needs no model (the tests and the
example use it, offline); it matches words, not meaning.

SQLite is reached through apsw (a dependency of cleancut), because many
Python builds' sqlite3 cannot load extensions. sqlite-vec is imported only here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

try:
    import sqlite_vec
except ImportError as exc:  # the extra is not installed: say which one
    raise ImportError(
        f"cleancut.sdk.vectorindex needs sqlite-vec: pip install 'cleancut[langgraph]' ({exc})"
    ) from exc

from .server import ControlServer

Embedding = Callable[[str], Sequence[float]]


@dataclass(frozen=True)
class Hit:
    key: str
    text: str
    distance: float
    meta: dict[str, Any]


class VectorIndex:
    """Memories and their vectors in one SQLite file; safe to share between threads."""

    def __init__(
        self,
        path: str | Path,
        embed: Embedding,
        dim: int,
        server: ControlServer | None = None,
        truncate_wal: bool = False,
    ) -> None:
        self.path = Path(path)
        self.truncate_wal = truncate_wal
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.embed = embed
        self.dim = dim
        self._lock = threading.Lock()
        self._db = apsw.Connection(str(self.path))
        self._db.enable_load_extension(True)
        self._db.load_extension(sqlite_vec.loadable_path())
        self._db.enable_load_extension(False)
        self._db.set_busy_timeout(5000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # every add is durable when it returns
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS memories"
            " (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, text TEXT NOT NULL,"
            " meta TEXT NOT NULL)"
        )
        self._db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS memory_vectors USING vec0(embedding float[{dim}])"
        )
        if server is not None:
            server.on_flush(self.flush)

    def add(self, key: str, text: str, meta: dict[str, Any] | None = None) -> None:
        """Index a memory (replacing the one with this key), text and vector at once."""
        vector = self._vector(text)
        with self._lock, self._db:  # one transaction
            row = self._db.execute("SELECT id FROM memories WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM memory_vectors WHERE rowid = ?", (row[0],))
                self._db.execute("DELETE FROM memories WHERE id = ?", (row[0],))
            self._db.execute(
                "INSERT INTO memories (key, text, meta) VALUES (?, ?, ?)",
                (key, text, json.dumps(meta or {}, sort_keys=True)),
            )
            rowid = self._db.last_insert_rowid()
            self._db.execute(
                "INSERT INTO memory_vectors (rowid, embedding) VALUES (?, ?)", (rowid, vector)
            )

    def remove(self, key: str) -> None:
        with self._lock, self._db:
            row = self._db.execute("SELECT id FROM memories WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM memory_vectors WHERE rowid = ?", (row[0],))
                self._db.execute("DELETE FROM memories WHERE id = ?", (row[0],))

    def query(self, text: str, k: int = 5) -> list[Hit]:
        """The k memories nearest to `text`, nearest first."""
        vector = self._vector(text)
        with self._lock:
            rows = self._db.execute(
                "SELECT m.key, m.text, m.meta, v.distance FROM memory_vectors v"
                " JOIN memories m ON m.id = v.rowid"
                " WHERE v.embedding MATCH ? AND k = ? ORDER BY v.distance",
                (vector, k),
            ).fetchall()
        return [Hit(str(key), str(body), float(str(dist)), json.loads(str(meta)))
                for key, body, meta, dist in rows]

    def keys(self) -> set[str]:
        """The keys of every memory that has its vector."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.key FROM memories m JOIN memory_vectors v ON v.rowid = m.id"
            ).fetchall()
        return {str(row[0]) for row in rows}

    def flush(self) -> None:
        """Every add is committed and fsynced already; with truncate_wal, also move the
        WAL into the database file (fsynced) and truncate it."""
        if self.truncate_wal:
            self.checkpoint_wal()

    def checkpoint_wal(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _vector(self, text: str) -> bytes:
        values = list(self.embed(text))
        if len(values) != self.dim:
            raise ValueError(f"embedding of {len(values)} numbers; the index holds {self.dim}")
        return struct.pack(f"{self.dim}f", *values)


def hashed_embedding(dim: int) -> Embedding:
    """A deterministic, offline embedding: each word hashed to a signed dimension, the
    sum normalised. Texts that share words are near; it knows no synonyms."""

    def embed(text: str) -> list[float]:
        vector = [0.0] * dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            slot = int.from_bytes(digest[:4], "big") % dim
            vector[slot] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    return embed
