"""The metadata database: engine set-up for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed transaction survives
``kill -9`` and power loss; write transactions start with ``BEGIN IMMEDIATE`` so two writers
never deadlock on a lock upgrade (they queue on ``busy_timeout`` instead).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

from silverlining.node.faults import crashpoint
from silverlining.node.store.schema import metadata

SCHEMA_VERSION = 1


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meta.db'}"


class Database:
    """Owns the engine. ``read()`` gives a connection for queries, ``write()`` a transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url,
                poolclass=QueuePool,
                pool_size=8,
                max_overflow=56,
                connect_args={"check_same_thread": False, "timeout": 30.0},
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True)

    def create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.write() as conn:
            conn.execute(
                text("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            )
            row = conn.execute(text("SELECT version FROM schema_version")).first()
            if row is None:
                conn.execute(
                    text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": SCHEMA_VERSION}
                )
            elif row[0] != SCHEMA_VERSION:
                raise RuntimeError(
                    f"metadata schema version {row[0]} is not supported by this software "
                    f"(expects {SCHEMA_VERSION})"
                )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction: committed when the block exits normally, rolled back on error."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn
                crashpoint("meta.before_commit")
            crashpoint("meta.committed")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (a deferred transaction on SQLite: takes no write lock)."""
        with self.engine.connect() as conn:
            conn.execution_options(sl_read=True)
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("sl_read"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
