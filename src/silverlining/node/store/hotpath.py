"""Reads on every request's path, straight through the database driver.

Going through SQLAlchemy's pool, transaction events and result processing costs ~100 µs
per query; a GET needs two or three lookups (key, bucket + object), which made the ORM
layer the largest cost of a small GET (profiled with py-spy, see benchmarks/RESULTS.md).
For SQLite, each thread keeps one autocommit connection; every statement is then its own
consistent snapshot (WAL readers never block the writer). Other databases use the
SQLAlchemy path, where the cost matters less than the network round trip.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from sqlalchemy import text

from silverlining.node.store.db import Database

KEY_SQL = (
    "SELECT k.secret_enc, k.revoked_at, a.id, a.name, a.canonical_id, a.created_at, "
    "a.quota_bytes, a.quota_objects, a.bytes_used, a.objects_used "
    "FROM access_keys k JOIN accounts a ON a.id = k.account_id WHERE k.access_key_id = :k"
)
BUCKET_OBJECT_SQL = (
    "SELECT b.account_id, b.region, b.created_at, o.key, o.size, o.etag, o.last_modified, "
    "o.segments, o.headers, o.checksums, o.tags, o.parts_count, o.data "
    "FROM buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = :k "
    "WHERE b.name = :b"
)
OBJECT_SQL = (
    "SELECT key, size, etag, last_modified, segments, headers, checksums, tags, parts_count, "
    "data FROM objects WHERE bucket = :b AND key = :k"
)
BUCKET_SQL = "SELECT account_id, region, created_at FROM buckets WHERE name = :b"
SCAN_SQL = {
    False: "SELECT key, size, etag, last_modified FROM objects WHERE bucket = :b AND key > :s "
           "ORDER BY key LIMIT :n",
    True: "SELECT key, size, etag, last_modified FROM objects WHERE bucket = :b AND key >= :s "
          "ORDER BY key LIMIT :n",
}
#: Columns stored as JSON (decoded here, since the driver returns text).
JSON_COLUMNS = frozenset({"segments", "headers", "checksums", "tags"})


class HotReads:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()
        self._path: str | None = None
        if db.is_sqlite:
            self._path = db.engine.url.database

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self._path is not None
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
        return conn

    def one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        if self._path is not None:
            row: tuple[Any, ...] | None = self._sqlite().execute(sql, params).fetchone()
            return row
        with self.db.read() as conn:
            r = conn.execute(text(sql), params).first()
            return None if r is None else tuple(r)

    def all(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self._path is not None:
            return list(self._sqlite().execute(sql, params).fetchall())
        with self.db.read() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params).all()]


def loads(value: Any) -> Any:
    """A JSON column's value (text from the driver, already decoded on other paths)."""
    return json.loads(value) if isinstance(value, str) else value
