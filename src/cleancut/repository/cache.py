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
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    distinct,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from cleancut import jsonparse

from .index import IndexSegment
from .pack import BlobEntry

SCHEMA_VERSION = 2  # 2: a blob may have several locations (primary key: id and pack)

metadata = MetaData()

meta_table = Table(
    "meta", metadata, Column("key", String, primary_key=True), Column("value", Text, nullable=False)
)
segments = Table("segments", metadata, Column("id", String, primary_key=True))
packs = Table(
    "packs",
    metadata,
    Column("id", String, primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("segment", String, nullable=False, index=True),
)
blobs = Table(
    "blobs",
    metadata,
    Column("id", LargeBinary, primary_key=True),
    Column("type", Integer, nullable=False),
    Column("pack", String, primary_key=True, index=True),
    Column("offset", Integer, nullable=False),
    Column("length", Integer, nullable=False),
    Column("raw_length", Integer, nullable=False),
)
snapshots = Table(
    "snapshots",
    metadata,
    Column("id", String, primary_key=True),
    Column("time", String, nullable=False, index=True),
    Column("name", String, nullable=False, index=True),
    Column("record", Text, nullable=False),
)

records_table = Table(
    "records",
    metadata,
    Column("id", String, primary_key=True),
    Column("record", Text, nullable=False),
)
"""Operational records already read and verified (repository/records.py): a record is
named by the hash of its stored bytes and never rewritten, so a backup's plan does not
decrypt every attempt record of the last month again. Added without a schema bump:
create_all adds the table to an older cache, which then fills on its next listing."""

# The whole blob index is read in one statement on the driver's own cursor: plain
# tuples, without SQLAlchemy's Row objects (~150,000 rows on the 1 GiB corpus).
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
    """One SQLite file per repository id, through SQLAlchemy Core. The process holds one
    engine with one connection (StaticPool), shared by its threads: each statement or
    transaction holds the cache's lock. One connection is also what lets SQLite's
    data_version tell another process's commits from this process's own."""

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
            self.engine: Engine = self._open_file(directory)
        except (OSError, OperationalError) as exc:
            if not _unwritable(exc):
                raise
            self.engine = _memory_engine()
            self._create_schema()
            self._say_unwritable(exc)

    def _open_file(self, directory: Path) -> Engine:
        # Decrypted metadata (paths, hosts, tags) lives here: keep it to the owner.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"timeout": 60, "check_same_thread": False},
            poolclass=StaticPool,
        )
        event.listen(self.engine, "connect", _pragmas)
        try:
            # Several processes may open a fresh cache at once: create the schema under a lock.
            with open(directory / "schema.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._create_schema()
        except BaseException:
            self.engine.dispose()
            raise
        return self.engine

    def _say_unwritable(self, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or str(getattr(exc, "orig", exc))
        self.warning = (
            f"the cache in {self.path.parent} cannot be written ({reason}): working without "
            "it this run (slower); free space there or set CLEANCUT_CACHE_DIR to another directory"
        )

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """The process's one connection, for this thread alone while the block runs."""
        with self._db_lock, self.engine.connect() as conn:
            yield conn

    def _transaction(self, work: Callable[[Connection], object]) -> None:
        with self._db_lock, self.engine.begin() as conn:
            work(conn)

    def _write(self, work: Callable[[Connection], object]) -> None:
        """Run one write transaction; if the file cannot take it, move to memory and retry."""
        try:
            self._transaction(work)
            return
        except (OSError, OperationalError) as exc:
            if not _unwritable(exc) or self.warning:
                raise
            self._move_to_memory(exc)
        self._transaction(work)

    def _move_to_memory(self, exc: BaseException) -> None:
        """Copy the cache file (reading still works on a full disk) into memory."""
        memory = _memory_engine()
        with self._db_lock:
            src, dst = self.engine.raw_connection(), memory.raw_connection()
            try:
                src.driver_connection.backup(dst.driver_connection)  # type: ignore[union-attr]
            finally:
                src.close()
                dst.close()
            self.engine.dispose()
            self.engine = memory
        self._say_unwritable(exc)

    def _create_schema(self) -> None:
        """Create the tables; a cache of another schema version is dropped and rebuilt."""
        with self._db_lock:
            metadata.create_all(self.engine)
            with self._connect() as conn:
                found = conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema")
                ).scalar()
            if found is not None and found != str(SCHEMA_VERSION):
                metadata.drop_all(self.engine)
                metadata.create_all(self.engine)
                found = None
            if found is None:
                self._transaction(
                    lambda conn: conn.execute(
                        insert(meta_table).values(key="schema", value=str(SCHEMA_VERSION))
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
            self.engine.dispose()

    # --- index segments -------------------------------------------------

    def segment_ids(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(segments.c.id)).scalars())

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

        def work(conn: Connection) -> None:
            for sid in ids:
                gone = list(
                    conn.execute(select(packs.c.id).where(packs.c.segment == sid)).scalars()
                )
                if gone:
                    conn.execute(
                        delete(blobs).where(blobs.c.pack == bindparam("pid")),
                        [{"pid": pid} for pid in gone],
                    )
                conn.execute(delete(packs).where(packs.c.segment == sid))
                conn.execute(delete(segments).where(segments.c.id == sid))

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
                    with self._connect() as conn:
                        # Read before the rows: a commit between the two makes the next
                        # reload() read again, never keep a stale copy.
                        self._loaded_version = _data_version(conn)
                        driver = conn.connection.driver_connection
                        rows = driver.execute(_ALL_BLOBS).fetchall()  # type: ignore[union-attr]
                        salts = driver.execute(_ALL_SALTS).fetchall()  # type: ignore[union-attr]
                    self._salts = dict(salts)
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
            if self._mem is not None:
                with self._connect() as conn:
                    if _data_version(conn) == self._loaded_version:
                        return
            self._mem = None

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
        with self._connect() as conn:
            ids = list(conn.execute(select(blobs.c.id).distinct()).scalars())
        yield from ids

    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            return {
                "blobs": conn.execute(select(func.count(distinct(blobs.c.id)))).scalar_one(),
                "packs": conn.execute(select(func.count()).select_from(packs)).scalar_one(),
                "stored_bytes": conn.execute(
                    select(func.coalesce(func.sum(packs.c.size), 0))
                ).scalar_one(),
                "raw_bytes": conn.execute(
                    select(func.coalesce(func.sum(blobs.c.raw_length), 0))
                ).scalar_one(),
            }

    # --- snapshot catalog -----------------------------------------------

    def snapshot_ids(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(snapshots.c.id)).scalars())

    def add_snapshot(self, snapshot_id: str, record: dict[str, Any]) -> None:
        self._write(
            lambda conn: conn.execute(
                insert(snapshots)
                .prefix_with("OR REPLACE")
                .values(
                    id=snapshot_id,
                    time=record["time"],
                    name=record["name"],
                    record=json.dumps(record, sort_keys=True),
                )
            )
        )

    def forget_snapshots(self, snapshot_ids: Iterable[str]) -> None:
        ids = list(snapshot_ids)

        def work(conn: Connection) -> None:
            conn.execute(
                delete(snapshots).where(snapshots.c.id == bindparam("sid")),
                [{"sid": sid} for sid in ids],
            )

        if ids:
            self._write(work)

    # --- operational records ------------------------------------------

    def records(self) -> dict[str, Any]:
        """Every cached record by id, as it was when verified."""
        with self._connect() as conn:
            rows = conn.execute(select(records_table.c.id, records_table.c.record)).all()
        return {row.id: jsonparse.loads(row.record) for row in rows}

    def update_records(self, added: dict[str, Any], gone: Iterable[str]) -> None:
        """Remember records read and verified; forget those no longer in the repository."""
        gone_ids = list(gone)

        def work(conn: Connection) -> None:
            if gone_ids:
                conn.execute(
                    delete(records_table).where(records_table.c.id == bindparam("rid")),
                    [{"rid": rid} for rid in gone_ids],
                )
            if added:
                conn.execute(
                    insert(records_table).prefix_with("OR REPLACE"),
                    [
                        {"id": rid, "record": json.dumps(r, sort_keys=True)}
                        for rid, r in added.items()
                    ],
                )

        if added or gone_ids:
            self._write(work)

    def snapshot_records(self) -> list[tuple[str, dict[str, Any]]]:
        with self._connect() as conn:
            rows = conn.execute(
                select(snapshots.c.id, snapshots.c.record).order_by(
                    snapshots.c.time, snapshots.c.id
                )
            ).all()
        return [(row.id, jsonparse.loads(row.record)) for row in rows]


def _add_segment(conn: Connection, segment_id: str, segment: IndexSegment) -> None:
    conn.execute(insert(segments).prefix_with("OR IGNORE").values(id=segment_id))
    pack_rows = [
        {"id": p.pack_id, "salt": p.salt, "size": p.size, "segment": segment_id}
        for p in segment.packs
    ]
    if pack_rows:
        conn.execute(insert(packs).prefix_with("OR IGNORE"), pack_rows)
    blob_rows = [
        {
            "id": e.id,
            "type": e.type,
            "pack": p.pack_id,
            "offset": e.offset,
            "length": e.length,
            "raw_length": e.raw_length,
        }
        for p in segment.packs
        for e in p.entries
    ]
    if blob_rows:
        conn.execute(insert(blobs).prefix_with("OR IGNORE"), blob_rows)


def _data_version(conn: Connection) -> int:
    """SQLite's count of commits by other connections to this database."""
    return int(conn.exec_driver_sql("PRAGMA data_version").scalar_one())


def _memory_engine() -> Engine:
    """One in-memory SQLite database, shared by every thread of this process."""
    return create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )


_UNWRITABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_UNWRITABLE_SQLITE = ("disk is full", "readonly database", "unable to open database", "disk i/o")


def _unwritable(exc: BaseException) -> bool:
    """Whether an error says the cache's filesystem cannot take writes."""
    if isinstance(exc, OSError):
        return exc.errno in _UNWRITABLE_ERRNOS
    return any(text in str(getattr(exc, "orig", exc)).lower() for text in _UNWRITABLE_SQLITE)


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
