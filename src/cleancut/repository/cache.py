"""The local SQLite cache: blob index and snapshot catalog.

A cache and never the truth: everything here is rebuilt from the repository's
index segments and snapshot records, so the file can be deleted at any time.
It is keyed by repository id and shared by concurrent processes (WAL mode,
busy timeout).

A cache that cannot be written (a full or read-only filesystem, no permission)
never stops a command: like restic, cleancut then works without it, from an
SQLite database in memory (copied from the file when one exists), and says so
once in `warning`. Only this run is slower; nothing is lost.

A blob may be indexed in more than one pack: a fresh copy stored after `check`
found the first one damaged. Each location is kept; a lookup prefers one that
no damage record names, and a blob whose only locations are damaged counts as
absent for deduplication, so the next backup stores it again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cleancut import jsonparse

from .index import IndexSegment
from .pack import BlobEntry

SCHEMA_VERSION = 2  # 2: a blob may have several locations (primary key: id and pack)

# The tables as SQLAlchemy Core created them before the cache moved to the standard
# library's sqlite3 (same names, columns and indexes): a cache file written by either
# opens in the other, and SCHEMA_VERSION alone decides when one is rebuilt.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (key))",
    "CREATE TABLE IF NOT EXISTS segments (id VARCHAR NOT NULL, PRIMARY KEY (id))",
    "CREATE TABLE IF NOT EXISTS packs (id VARCHAR NOT NULL, salt BLOB NOT NULL, "
    "size INTEGER NOT NULL, segment VARCHAR NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX IF NOT EXISTS ix_packs_segment ON packs (segment)",
    'CREATE TABLE IF NOT EXISTS blobs (id BLOB NOT NULL, type INTEGER NOT NULL, '
    'pack VARCHAR NOT NULL, "offset" INTEGER NOT NULL, length INTEGER NOT NULL, '
    "raw_length INTEGER NOT NULL, PRIMARY KEY (id, pack))",
    "CREATE INDEX IF NOT EXISTS ix_blobs_pack ON blobs (pack)",
    "CREATE TABLE IF NOT EXISTS snapshots (id VARCHAR NOT NULL, time VARCHAR NOT NULL, "
    "name VARCHAR NOT NULL, record TEXT NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX IF NOT EXISTS ix_snapshots_time ON snapshots (time)",
    "CREATE INDEX IF NOT EXISTS ix_snapshots_name ON snapshots (name)",
)
_TABLES = ("meta", "segments", "packs", "blobs", "snapshots")

_ALL_BLOBS = 'SELECT id, pack, type, "offset", length, raw_length FROM blobs'
_ALL_SALTS = "SELECT id, salt FROM packs"


def default_cache_root() -> Path:
    override = os.environ.get("CLEANCUT_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs  # only where no directory is given: most runs never need it

    return Path(platformdirs.user_cache_dir("cleancut"))


class BlobLocation:
    __slots__ = ("pack_id", "salt", "entry")

    def __init__(self, pack_id: str, salt: bytes, entry: BlobEntry) -> None:
        self.pack_id = pack_id
        self.salt = salt
        self.entry = entry


class Cache:
    """One SQLite file per repository id, through one connection shared by the
    process's threads (each statement or transaction holds the connection's lock)."""

    def __init__(self, repo_id: str, root: Path | None = None) -> None:
        directory = (root or default_cache_root()) / repo_id
        self.path = directory / "index.sqlite"
        self.warning = ""  # set when the cache could not be written and lives in memory
        self._mem: dict[bytes, tuple[str, int, int, int, int]] | None = None
        self._salts: dict[str, bytes] = {}
        self._mem_lock = threading.Lock()
        self._loaded_version = -1  # PRAGMA data_version when _mem was loaded
        self._db_lock = threading.RLock()
        self.damaged: frozenset[tuple[str, bytes]] = frozenset()  # (pack id, blob id)
        try:
            self.db: sqlite3.Connection = self._open_file(directory)
        except (OSError, sqlite3.OperationalError) as exc:
            if not _unwritable(exc):
                raise
            self.db = _memory_db()
            self._create_schema()
            self._say_unwritable(exc)

    def _open_file(self, directory: Path) -> sqlite3.Connection:
        # Decrypted metadata (paths, hosts, tags) lives here: keep it to the owner.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        try:
            _pragmas(self.db)
            # Several processes may open a fresh cache at once: create the schema under a lock.
            with open(directory / "schema.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._create_schema()
        except BaseException:
            self.db.close()
            raise
        return self.db

    def _say_unwritable(self, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(exc)
        self.warning = (
            f"the cache in {self.path.parent} cannot be written ({reason}): working without "
            "it this run (slower); free space there or set CLEANCUT_CACHE_DIR to another directory"
        )

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        with self._db_lock:
            self.db.execute("BEGIN")
            try:
                work(self.db)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def _write(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Run one write transaction; if the file cannot take it, move to memory and retry."""
        try:
            self._transaction(work)
            return
        except (OSError, sqlite3.OperationalError) as exc:
            if not _unwritable(exc) or self.warning:
                raise
            self._move_to_memory(exc)
        self._transaction(work)

    def _query(self, sql: str, *params: object) -> list[Any]:
        with self._db_lock:
            return self.db.execute(sql, params).fetchall()

    def _move_to_memory(self, exc: BaseException) -> None:
        """Copy the cache file (reading still works on a full disk) into memory."""
        memory = _memory_db()
        with self._db_lock:
            self.db.backup(memory)
            self.db.close()
            self.db = memory
        self._say_unwritable(exc)

    def _create_schema(self) -> None:
        """Create the tables; a cache of another schema version is dropped and rebuilt."""
        def create(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                conn.execute(statement)

        self._transaction(create)
        row = self._query("SELECT value FROM meta WHERE key = 'schema'")
        found = row[0][0] if row else None
        if found is not None and found != str(SCHEMA_VERSION):

            def rebuild(conn: sqlite3.Connection) -> None:
                for table in _TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                create(conn)

            self._transaction(rebuild)
            found = None
        if found is None:
            self._transaction(
                lambda conn: conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            )

    def set_damaged(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        """The blob locations the repository's damage records name."""
        damaged = frozenset(pairs)
        with self._mem_lock:
            if damaged != self.damaged:
                self.damaged = damaged
                self._mem = None

    def close(self) -> None:
        with self._db_lock:
            self.db.close()

    # --- index segments -------------------------------------------------

    def segment_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT id FROM segments")}

    def add_segment(self, segment_id: str, segment: IndexSegment) -> None:
        self._write(lambda conn: _add_segment(conn, segment_id, segment))
        with self._mem_lock:
            if self._mem is not None:
                for p in segment.packs:
                    self._salts[p.pack_id] = p.salt
                    for e in p.entries:
                        self._prefer(
                            self._mem, e.id, (p.pack_id, e.type, e.offset, e.length, e.raw_length)
                        )

    def _prefer(
        self, mem: dict[bytes, tuple[str, int, int, int, int]], blob_id: bytes, row: tuple
    ) -> None:
        """Keep the first location of a blob, unless it is damaged and this one is not."""
        old = mem.get(blob_id)
        if old is None or (
            (old[0], blob_id) in self.damaged and (row[0], blob_id) not in self.damaged
        ):
            mem[blob_id] = row

    def forget_segments(self, segment_ids: Iterable[str]) -> None:
        """Drop segments that left the repository, and the blobs only they indexed."""
        ids = list(segment_ids)

        def work(conn: sqlite3.Connection) -> None:
            for sid in ids:
                gone = conn.execute("SELECT id FROM packs WHERE segment = ?", (sid,)).fetchall()
                conn.executemany("DELETE FROM blobs WHERE pack = ?", gone)
                conn.execute("DELETE FROM packs WHERE segment = ?", (sid,))
                conn.execute("DELETE FROM segments WHERE id = ?", (sid,))

        if ids:
            self._write(work)
        with self._mem_lock:
            self._mem = None

    def _memory(self) -> dict[bytes, tuple[str, int, int, int, int]]:
        """The blob index in memory, loaded from SQLite once per process.

        Backup and restore look up every blob; a dict answers in well under a
        microsecond where a SQLite statement costs tens (~150 bytes a blob).
        """
        mem = self._mem
        if mem is None:
            with self._mem_lock:
                if self._mem is None:
                    # Read before the rows: a commit between the two makes the next
                    # reload() read again, never keep a stale copy.
                    self._loaded_version = self._data_version()
                    rows = self._query(_ALL_BLOBS)
                    self._salts = dict(self._query(_ALL_SALTS))
                    fresh: dict[bytes, tuple[str, int, int, int, int]] = {}
                    if self.damaged:
                        for row in rows:
                            self._prefer(fresh, row[0], row[1:])
                    else:  # nothing damaged: the first location of each blob
                        for row in rows:
                            fresh.setdefault(row[0], row[1:])
                    self._mem = fresh
                mem = self._mem
        return mem

    def load(self) -> None:
        """Load the blob index into memory unless it is there already."""
        self._memory()

    def reload(self) -> None:
        """Forget the in-memory index if another connection (another process sharing the
        cache) committed since it was loaded; the next lookup then reads the file again.
        This process's own writes are in it already (add_segment, forget_segments)."""
        with self._mem_lock:
            if self._mem is not None and self._data_version() == self._loaded_version:
                return
            self._mem = None

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections to this database."""
        return int(self._query("PRAGMA data_version")[0][0])

    def tree_packs(self) -> list[str]:
        """Packs that hold tree blobs."""
        seen: dict[str, None] = {}
        for pack_id, blob_type, *_ in self._memory().values():
            if blob_type == 1:
                seen[pack_id] = None
        return list(seen)

    def has_blob(self, blob_id: bytes) -> bool:
        """Whether an intact copy is indexed: a blob known only in damaged places is absent."""
        row = self._memory().get(blob_id)
        return row is not None and (row[0], blob_id) not in self.damaged

    def find_blob(self, blob_id: bytes) -> BlobLocation | None:
        row = self._memory().get(blob_id)
        if row is None:
            return None
        pack_id, blob_type, offset, length, raw_length = row
        entry = BlobEntry(blob_type, blob_id, offset, length, raw_length)
        return BlobLocation(pack_id, self._salts[pack_id], entry)

    def blob_ids(self) -> Iterator[bytes]:
        for row in self._query("SELECT DISTINCT id FROM blobs"):
            yield row[0]

    def counts(self) -> dict[str, int]:
        def one(sql: str) -> int:
            return int(self._query(sql)[0][0])

        return {
            "blobs": one("SELECT count(DISTINCT id) FROM blobs"),
            "packs": one("SELECT count(*) FROM packs"),
            "stored_bytes": one("SELECT coalesce(sum(size), 0) FROM packs"),
            "raw_bytes": one("SELECT coalesce(sum(raw_length), 0) FROM blobs"),
        }

    # --- snapshot catalog -----------------------------------------------

    def snapshot_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT id FROM snapshots")}

    def add_snapshot(self, snapshot_id: str, record: dict[str, Any]) -> None:
        self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO snapshots (id, time, name, record) VALUES (?, ?, ?, ?)",
                (snapshot_id, record["time"], record["name"], json.dumps(record, sort_keys=True)),
            )
        )

    def forget_snapshots(self, snapshot_ids: Iterable[str]) -> None:
        ids = list(snapshot_ids)

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM snapshots WHERE id = ?", [(sid,) for sid in ids])

        if ids:
            self._write(work)

    def snapshot_records(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self._query("SELECT id, record FROM snapshots ORDER BY time, id")
        return [(sid, jsonparse.loads(record)) for sid, record in rows]


def _add_segment(conn: sqlite3.Connection, segment_id: str, segment: IndexSegment) -> None:
    conn.execute("INSERT OR IGNORE INTO segments (id) VALUES (?)", (segment_id,))
    conn.executemany(
        "INSERT OR IGNORE INTO packs (id, salt, size, segment) VALUES (?, ?, ?, ?)",
        [(p.pack_id, p.salt, p.size, segment_id) for p in segment.packs],
    )
    conn.executemany(
        'INSERT OR IGNORE INTO blobs (id, type, pack, "offset", length, raw_length) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (e.id, e.type, p.pack_id, e.offset, e.length, e.raw_length)
            for p in segment.packs
            for e in p.entries
        ],
    )


def _memory_db() -> sqlite3.Connection:
    """One in-memory SQLite database, shared by every thread of this process."""
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


_UNWRITABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_UNWRITABLE_SQLITE = ("disk is full", "readonly database", "unable to open database", "disk i/o")


def _unwritable(exc: BaseException) -> bool:
    """Whether an error says the cache's filesystem cannot take writes."""
    if isinstance(exc, OSError):
        return exc.errno in _UNWRITABLE_ERRNOS
    return any(text in str(exc).lower() for text in _UNWRITABLE_SQLITE)


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=60000")
