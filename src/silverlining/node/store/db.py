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

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool

from silverlining.node.faults import crashpoint
from silverlining.node.store.schema import metadata

SCHEMA_VERSION = 1
T = TypeVar("T")
#: Most callers whose work shares one commit.
MAX_BATCH = 128
#: PostgreSQL advisory lock keys (one namespace per database): schema creation, and the
#: storage_events log (writers share it, the metering fold takes it alone).
SCHEMA_LOCK = 0x534C_0001
STORAGE_EVENTS_LOCK = 0x534C_0002
#: SQLSTATEs after which a unit of work is simply run again (PostgreSQL, several processes):
#: deadlock detected, serialization failure, unique violation (a concurrent insert of the
#: same row won: the retry reads it), lock wait timed out (see _BATCH_LOCK_WAIT_MS).
_RETRY_SQLSTATES = frozenset({"40P01", "40001", "23505", "55P03"})
_RETRIES = 3
#: How long a job after the first of a batch waits for a row lock (ms; PostgreSQL).
_BATCH_LOCK_WAIT_MS = 50


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
        elif url.startswith(("postgresql", "postgres")):
            # Several node processes share the database: each keeps a modest pool. A URL
            # without a driver gets psycopg 3 (the `postgres` extra), not SQLAlchemy's
            # default psycopg2.
            target = make_url(url)
            if target.drivername in ("postgresql", "postgres"):
                target = target.set(drivername="postgresql+psycopg")
            try:
                self.engine = create_engine(target, pool_size=8, max_overflow=24,
                                            pool_pre_ping=True)
            except ImportError as exc:
                raise RuntimeError(
                    f"PostgreSQL needs a driver ({exc}): pip install 'silverlining[postgres]' "
                    f"and use a postgresql+psycopg:// URL") from None
        else:
            raise RuntimeError(
                f"unsupported metadata database {url.split(':', 1)[0]!r}: use SQLite (the "
                f"default) or PostgreSQL (postgresql+psycopg://user:password@host/dbname)")
        self.is_postgresql = self.engine.dialect.name == "postgresql"

    def create_schema(self) -> None:
        if self.is_postgresql:
            # Several nodes may start at once on an empty database: one creates the schema
            # (DDL is transactional on PostgreSQL), the others wait for it.
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
                metadata.create_all(conn)
                self._check_version(conn)
            return
        metadata.create_all(self.engine)
        with self.write() as conn:
            self._check_version(conn)

    @staticmethod
    def _check_version(conn: Connection) -> None:
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

    def lock_storage_events(self, conn: Connection, *, exclusive: bool) -> None:
        """PostgreSQL: order storage_events against the metering fold. Writers take the lock
        shared before inserting an event (so before its id is drawn) and the fold takes it
        alone: when the fold reads, every id drawn so far is committed or rolled back, and
        its cursor never passes an event that commits later. SQLite serialises writers."""
        if self.is_postgresql:
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            conn.execute(text(f"SELECT {fn}(:k)"), {"k": STORAGE_EVENTS_LOCK})

    def retryable(self, exc: BaseException) -> bool:
        """A transient conflict between processes sharing a PostgreSQL database."""
        return (self.is_postgresql and isinstance(exc, DBAPIError)
                and getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES)

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
            self._transaction(batch, may_conflict=self.db.is_postgresql)
        except _Conflict:
            # PostgreSQL, several processes: a job of this batch deadlocked with another
            # process's batch (each held locks the other wanted) or lost an insert race. The
            # batch was rolled back; each job now runs in a transaction of its own, so none
            # waits on locks another job of this batch holds.
            for job in batch:
                for attempt in range(_RETRIES + 1):
                    try:
                        self._transaction([job], may_conflict=attempt < _RETRIES)
                    except _Conflict:
                        continue
                    break
        finally:
            for job in batch:
                job.settle()

    def _transaction(self, batch: list[_Job[Any]], *, may_conflict: bool) -> None:
        """Run ``batch`` in one transaction, each job in its own savepoint. Raises _Conflict
        (all rolled back) when ``may_conflict`` and a job hit a transient conflict."""
        for job in batch:
            job.result = job.error = None
        try:
            with self.db.write() as conn:
                for i, job in enumerate(batch):
                    if i == 1 and may_conflict:
                        # The jobs after the first wait only briefly for a row lock: a
                        # batch waiting for another process's batch while holding locks of
                        # its own may be half of a deadlock, which PostgreSQL would take
                        # deadlock_timeout (1 s) to detect. Instead: roll back, rerun alone.
                        conn.execute(text(f"SET LOCAL lock_timeout = {_BATCH_LOCK_WAIT_MS}"))
                    savepoint = _Savepoint(conn, raw=self.db.is_sqlite)
                    try:
                        job.result = job.fn(conn)
                    except BaseException as exc:  # the caller's error, re-raised to it
                        savepoint.rollback()
                        if may_conflict and self.db.retryable(exc):
                            raise _Conflict from exc
                        job.error = exc
                    else:
                        savepoint.release()
        except _Conflict:
            raise
        except BaseException as exc:  # the commit itself failed: nobody's work is durable
            if may_conflict and self.db.retryable(exc):
                raise _Conflict from exc
            for job in batch:
                if job.error is None:
                    job.error = exc
                    job.result = None


class _Savepoint:
    """One job's savepoint in a group-commit transaction.

    On SQLite the statements go straight to the driver connection, as the object statements
    do (``store/objects.py``): through SQLAlchemy, ``begin_nested()`` and its commit compiled
    and dispatched a new ``SAVEPOINT`` name each time and took ~40% of a 4 KiB PUT's GIL time
    (benchmarks/PROFILE.md). One fixed name does: savepoints are strictly nested, and each
    is released or rolled back before the next job starts. PostgreSQL keeps SQLAlchemy's
    (its conflict handling relies on the connection state SQLAlchemy tracks)."""

    __slots__ = ("_nested", "_raw")

    def __init__(self, conn: Connection, *, raw: bool) -> None:
        self._raw: Any = None
        self._nested: Any = None
        if raw:
            self._raw = conn.connection.driver_connection
            self._raw.execute("SAVEPOINT sl_job")
        else:
            self._nested = conn.begin_nested()

    def release(self) -> None:
        if self._raw is not None:
            self._raw.execute("RELEASE SAVEPOINT sl_job")
        else:
            self._nested.commit()

    def rollback(self) -> None:
        if self._raw is not None:
            # ROLLBACK TO keeps the savepoint open; release it so the next job's is the only one
            self._raw.execute("ROLLBACK TO SAVEPOINT sl_job")
            self._raw.execute("RELEASE SAVEPOINT sl_job")
        else:
            self._nested.rollback()


class _Conflict(Exception):
    """A transient conflict between processes sharing a PostgreSQL database (see
    :meth:`Database.retryable`): the transaction was rolled back and is run again."""
