"""The metadata database: engine set-up for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed transaction survives
``kill -9`` and power loss; write transactions start with ``BEGIN IMMEDIATE`` so two writers
never deadlock on a lock upgrade (they queue on ``busy_timeout`` instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

from silverlining.node.faults import crashpoint
from silverlining.node.store.schema import metadata

SCHEMA_VERSION = 1
T = TypeVar("T")
#: Most callers whose work shares one commit.
MAX_BATCH = 128


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'meta.db'}"


class Database:
    """Owns the engine. ``read()`` gives a connection for queries, ``write()`` a transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._batcher: _GroupCommitter | None = None
        self._batcher_lock = threading.Lock()
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

    def transact(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction, group-committed with concurrent callers: their
        work shares one commit (one fsync), each in its own savepoint, so one caller's error
        rolls back only its own changes. Returns (or raises) what ``fn`` did once the commit
        is durable. Blocks; call from a worker thread, never from the event loop."""
        return self._committer().submit(fn)

    async def transact_async(self, fn: Callable[[Connection], T]) -> T:
        """:meth:`transact` for the event loop: ``fn`` runs on the commit thread and the
        caller is resumed once the commit is durable, without a worker thread of its own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._committer().enqueue(_Job(fn, loop, future))
        return await future

    def _committer(self) -> _GroupCommitter:
        if self._batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    self._batcher = _GroupCommitter(self)
        return self._batcher

    def dispose(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    # Deleted rows (inline object bytes of a deprovisioned tenant) are overwritten, not left
    # in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("sl_read"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "future", "loop", "result")

    def __init__(self, fn: Callable[[Connection], T],
                 loop: asyncio.AbstractEventLoop | None = None,
                 future: asyncio.Future[T] | None = None) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self) -> None:
        """Wake the caller (called on the commit thread once the batch is final)."""
        if self.loop is None:
            self.done.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                self.loop.call_soon_threadsafe(self._settle_future)

    def _settle_future(self) -> None:
        assert self.future is not None
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)  # type: ignore[arg-type]


class _GroupCommitter:
    """One writer thread: takes every write queued while the previous commit was being made
    durable and commits them together (classic group commit)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sl-commit", daemon=True)
        self._thread.start()

    def enqueue(self, job: _Job[Any]) -> None:
        self._queue.put(job)

    def submit(self, fn: Callable[[Connection], T]) -> T:
        job = _Job(fn)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                batch.append(job)
            self._commit(batch)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        try:
            with self.db.write() as conn:
                for job in batch:
                    savepoint = conn.begin_nested()
                    try:
                        job.result = job.fn(conn)
                    except BaseException as exc:  # the caller's error, re-raised to it
                        savepoint.rollback()
                        job.error = exc
                    else:
                        savepoint.commit()
        except BaseException as exc:  # the commit itself failed: nobody's work is durable
            for job in batch:
                if job.error is None:
                    job.error = exc
                    job.result = None
        finally:
            for job in batch:
                job.settle()
