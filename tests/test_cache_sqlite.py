"""The local cache's SQLite file, written through SQLAlchemy Core (decision 0011).

A cache file that earlier releases left (the tables below, as SQLAlchemy 2.0 created
them) opens unchanged with its rows, a fresh cache gets exactly those tables, a cache of
another schema version is rebuilt, and one process sees what another sharing the file
committed (a concurrent prune's removals) when it asks to reload, and not otherwise.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cleancut.repository.cache import SCHEMA_VERSION, Cache
from cleancut.repository.index import IndexSegment, PackRecord
from cleancut.repository.pack import BlobEntry

# What SQLAlchemy 2.0's create_all emitted for the cache's tables (sqlite_master).
SQLALCHEMY_DDL = (
    'CREATE TABLE blobs (\n\tid BLOB NOT NULL, \n\ttype INTEGER NOT NULL, \n\tpack VARCHAR '
    'NOT NULL, \n\t"offset" INTEGER NOT NULL, \n\tlength INTEGER NOT NULL, \n\traw_length '
    "INTEGER NOT NULL, \n\tPRIMARY KEY (id, pack)\n)",
    "CREATE INDEX ix_blobs_pack ON blobs (pack)",
    'CREATE TABLE meta (\n\t"key" VARCHAR NOT NULL, \n\tvalue TEXT NOT NULL, \n\tPRIMARY KEY '
    '("key")\n)',
    "CREATE TABLE packs (\n\tid VARCHAR NOT NULL, \n\tsalt BLOB NOT NULL, \n\tsize INTEGER NOT "
    "NULL, \n\tsegment VARCHAR NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_packs_segment ON packs (segment)",
    "CREATE TABLE segments (\n\tid VARCHAR NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE TABLE snapshots (\n\tid VARCHAR NOT NULL, \n\ttime VARCHAR NOT NULL, \n\tname "
    "VARCHAR NOT NULL, \n\trecord TEXT NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_snapshots_name ON snapshots (name)",
    "CREATE INDEX ix_snapshots_time ON snapshots (time)",
)
RECORDS_DDL = (  # added later, without a schema bump: create_all adds it to an older cache
    "CREATE TABLE records (\n\tid VARCHAR NOT NULL, \n\trecord TEXT NOT NULL, \n\tPRIMARY KEY "
    "(id)\n)"
)
BLOB = bytes(range(32))
OTHER = bytes(range(1, 33))


def _old_cache(root: Path, schema: str) -> None:
    directory = root / "repo-id"
    directory.mkdir(parents=True)
    db = sqlite3.connect(directory / "index.sqlite")
    for statement in SQLALCHEMY_DDL:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema', ?)", (schema,))
    db.execute("INSERT INTO segments VALUES ('seg1')")
    db.execute("INSERT INTO packs VALUES ('pack1', ?, 1000, 'seg1')", (b"salt",))
    db.execute("INSERT INTO blobs VALUES (?, 0, 'pack1', 10, 100, 80)", (BLOB,))
    db.execute(
        "INSERT INTO snapshots VALUES ('snap1', '2026-12-01T00:00:00Z', 'src', ?)",
        ('{"name": "src", "time": "2026-12-01T00:00:00Z"}',),
    )
    db.commit()
    db.close()


def _segment(pack_id: str, blob_id: bytes) -> IndexSegment:
    entry = BlobEntry(type=0, id=blob_id, offset=0, length=50, raw_length=40)
    return IndexSegment(packs=[PackRecord(pack_id, b"salt2", 500, [entry])])


def test_a_cache_written_through_sqlalchemy_opens_with_its_rows(tmp_path: Path):
    _old_cache(tmp_path, str(SCHEMA_VERSION))
    cache = Cache("repo-id", tmp_path)
    try:
        assert cache.warning == ""
        assert cache.segment_ids() == {"seg1"}
        assert cache.has_blob(BLOB)
        loc = cache.find_blob(BLOB)
        assert loc is not None and (loc.pack_id, loc.salt, loc.entry.offset) == (
            "pack1", b"salt", 10
        )
        assert [sid for sid, _ in cache.snapshot_records()] == ["snap1"]
        cache.add_segment("seg2", _segment("pack2", OTHER))
        assert cache.has_blob(OTHER)
        assert cache.counts() == {"blobs": 2, "packs": 2, "stored_bytes": 1500, "raw_bytes": 120}
    finally:
        cache.close()


def test_a_fresh_cache_has_the_tables_earlier_releases_wrote(tmp_path: Path):
    Cache("repo-id", tmp_path).close()
    db = sqlite3.connect(tmp_path / "repo-id" / "index.sqlite")
    try:
        ddl = db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    finally:
        db.close()
    assert sorted(row[0] for row in ddl) == sorted((*SQLALCHEMY_DDL, RECORDS_DDL))


def test_a_cache_from_before_the_records_table_keeps_its_data_and_gains_it(tmp_path: Path):
    _old_cache(tmp_path, str(SCHEMA_VERSION))  # this schema version, no records table
    cache = Cache("repo-id", tmp_path)
    try:
        assert cache.has_blob(BLOB) and cache.snapshot_ids() == {"snap1"}
        assert cache.records() == {}
        cache.update_records({"r1": {"type": "backup-attempt", "time": "t"}}, [])
    finally:
        cache.close()
    again = Cache("repo-id", tmp_path)
    try:
        assert again.records() == {"r1": {"type": "backup-attempt", "time": "t"}}
        again.update_records({}, ["r1"])
        assert again.records() == {}
    finally:
        again.close()


def test_a_cache_of_another_schema_version_is_rebuilt_empty(tmp_path: Path):
    _old_cache(tmp_path, "1")
    cache = Cache("repo-id", tmp_path)
    try:
        assert cache.segment_ids() == set() and not cache.has_blob(BLOB)
        assert cache.snapshot_ids() == set()
    finally:
        cache.close()
    reopened = Cache("repo-id", tmp_path)  # now of this version: kept
    try:
        reopened.add_segment("seg9", _segment("pack9", OTHER))
    finally:
        reopened.close()
    again = Cache("repo-id", tmp_path)
    try:
        assert again.has_blob(OTHER)
    finally:
        again.close()


def test_a_reload_sees_what_another_process_committed(tmp_path: Path):
    _old_cache(tmp_path, str(SCHEMA_VERSION))
    backup, prune = Cache("repo-id", tmp_path), Cache("repo-id", tmp_path)
    try:
        assert backup.has_blob(BLOB)  # loaded into memory
        backup.reload()  # nothing committed by anyone else: still answers
        assert backup.has_blob(BLOB)
        prune.forget_segments(["seg1"])  # another connection takes the blob out
        assert backup.has_blob(BLOB)  # the copy in memory until asked to reload
        backup.reload()
        assert not backup.has_blob(BLOB)
        backup.add_segment("seg2", _segment("pack2", OTHER))  # its own write: no reload
        assert backup.has_blob(OTHER)
    finally:
        backup.close()
        prune.close()
