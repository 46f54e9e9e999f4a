"""Buckets, objects and multipart uploads in the metadata database.

Every method is one transaction: when it returns, the change is committed (durable, since
SQLite runs with ``synchronous=FULL``); when it raises, nothing changed. Methods that replace
or remove objects return the blob ids that are no longer referenced, for the caller to delete
*after* the commit (so a crash in between leaves an orphan for the sweep, never a dangling
reference).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Row,
    TextClause,
    and_,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from silverlining.node import errors
from silverlining.node.domain.model import (
    Bucket,
    ListEntry,
    ObjectRecord,
    Part,
    Segment,
    Upload,
)
from silverlining.node.store import schema as t
from silverlining.node.store.db import Database
from silverlining.node.store.hotpath import (
    BUCKET_OBJECT_SQL,
    BUCKET_SQL,
    JSON_COLUMNS,
    OBJECT_SQL,
    SCAN_SQL,
    HotReads,
    loads,
)

O = t.objects.c  # noqa: E741 - column namespace shorthand
U = t.uploads.c
P = t.parts.c


def _record_from_tuple(bucket: str, r: tuple[Any, ...]) -> ObjectRecord:
    """An object from a hot-path row: (key, size, etag, last_modified, segments, headers,
    checksums, tags, parts_count)."""
    return ObjectRecord(
        bucket=bucket,
        key=r[0],
        size=r[1],
        etag=r[2],
        last_modified=r[3],
        segments=tuple(Segment(b, s) for b, s in loads(r[4])),
        headers=loads(r[5]),
        checksums=loads(r[6]),
        tags=loads(r[7]),
        parts_count=r[8],
        data=None if r[9] is None else bytes(r[9]),
    )



# Statements of the write path, as plain SQL: building them with SQLAlchemy's expression
# language on every write cost more than executing them (py-spy, 4 KiB PUT benchmark).
_UPSERT_OBJECT = (
    "INSERT INTO objects (bucket, key, size, etag, last_modified, segments, headers, "
    "checksums, tags, parts_count, data) VALUES (:bucket, :key, :size, :etag, :last_modified, "
    ":segments, :headers, :checksums, :tags, :parts_count, :data)"
)
_UPDATE_OBJECT = (
    "UPDATE objects SET size = :size, etag = :etag, last_modified = :last_modified, "
    "segments = :segments, headers = :headers, checksums = :checksums, tags = :tags, "
    "parts_count = :parts_count, data = :data WHERE bucket = :bucket AND key = :key"
)
_DELETE_OBJECT = "DELETE FROM objects WHERE bucket = :b AND key = :k"
_ACCOUNT_USAGE = (
    "SELECT quota_bytes, quota_objects, bytes_used, objects_used FROM accounts WHERE id = :a"
)
_CHARGE = (
    "UPDATE accounts SET bytes_used = bytes_used + :db, objects_used = objects_used + :do "
    "WHERE id = :a"
)
_STORAGE_EVENT = (
    "INSERT INTO storage_events (account_id, ts_ms, bytes_used, objects_used) "
    "VALUES (:a, :t, :b, :o)"
)
# PostgreSQL only (several processes write): the owner's row is locked before the object is
# read, so every write charged to one account (any of its buckets) is serialised across
# processes and the quota check and the replaced object are the ones this write sees.
_LOCK_ACCOUNT = "SELECT id FROM accounts WHERE id = :a FOR UPDATE"
# ... and the bucket row is share-locked while an object is written into it, so a concurrent
# DeleteBucket (which locks it for update) cannot leave an object in a deleted bucket.
_REQUIRE_BUCKET = BUCKET_SQL + " FOR SHARE"


def _sql(conn: Connection, statement: str, params: dict[str, Any]) -> Any:
    """Execute plain SQL inside ``conn``'s transaction. On SQLite, straight on the driver
    connection (the same connection and transaction); elsewhere through ``text()``, with
    JSON columns bound as JSON (see :func:`_raw_values`)."""
    if conn.dialect.name == "sqlite":
        return conn.connection.driver_connection.execute(statement, params)  # type: ignore[union-attr]
    return conn.execute(_text(statement), params)


@functools.lru_cache(maxsize=64)
def _text(statement: str) -> TextClause:
    """``statement`` as a TextClause whose JSON columns' parameters are typed JSON (built once
    per statement): PostgreSQL refuses a text/varchar value for a ``json`` column."""
    names = set(re.findall(r"(?<![:\w]):(\w+)", statement)) & JSON_COLUMNS
    return text(statement).bindparams(*(bindparam(n, type_=JSON) for n in sorted(names)))


def _raw_values(rec: ObjectRecord, conn: Connection) -> dict[str, Any]:
    """Bind values for the plain-SQL statements. On SQLite (the driver directly), JSON
    columns serialised as SQLAlchemy's JSON type stores them; elsewhere the typed
    parameters of :func:`_text` serialise them."""
    values = _values(rec)
    if conn.dialect.name == "sqlite":
        for column in ("segments", "headers", "checksums", "tags"):
            values[column] = json.dumps(values[column])
    return values


def _upload(row: Row[Any]) -> Upload:
    return Upload(
        upload_id=row.upload_id,
        bucket=row.bucket,
        key=row.key,
        account_id=row.account_id,
        initiated=row.initiated,
        headers=row.headers,
        tags=row.tags,
        checksum_algorithm=row.checksum_algorithm,
        checksum_type=row.checksum_type,
    )


def _part(row: Row[Any]) -> Part:
    return Part(row.part_number, row.blob_id, row.size, row.etag, row.last_modified, row.checksums)


def _values(rec: ObjectRecord) -> dict[str, Any]:
    return {
        "bucket": rec.bucket,
        "key": rec.key,
        "size": rec.size,
        "etag": rec.etag,
        "last_modified": rec.last_modified,
        "segments": [[s.blob_id, s.size] for s in rec.segments],
        "headers": rec.headers,
        "checksums": rec.checksums,
        "tags": rec.tags,
        "parts_count": rec.parts_count,
        "data": rec.data,
    }


class ObjectRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hot = HotReads(db)

    # buckets --------------------------------------------------------------------------
    def create_bucket(self, name: str, account_id: int, region: str) -> Bucket:
        now = time.time()
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(t.buckets).values(
                        name=name, account_id=account_id, region=region, created_at=now
                    )
                )
        except IntegrityError:
            existing = self.get_bucket(name)
            if existing is not None and existing.account_id == account_id:
                raise errors.BucketAlreadyOwnedByYou(BucketName=name) from None
            raise errors.BucketAlreadyExists(BucketName=name) from None
        return Bucket(name, account_id, region, now)

    def get_bucket(self, name: str) -> Bucket | None:
        row = self.hot.one(BUCKET_SQL, {"b": name})
        return None if row is None else Bucket(name, row[0], row[1], row[2])

    def get_bucket_and_object(
        self, bucket: str, key: str
    ) -> tuple[Bucket | None, ObjectRecord | None]:
        """The bucket and the object, in one statement (one snapshot)."""
        row = self.hot.one(BUCKET_OBJECT_SQL, {"b": bucket, "k": key})
        if row is None:
            return None, None
        b = Bucket(bucket, row[0], row[1], row[2])
        return b, (None if row[3] is None else _record_from_tuple(bucket, row[3:]))

    def list_buckets(self, account_id: int) -> list[Bucket]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.buckets)
                .where(t.buckets.c.account_id == account_id)
                .order_by(t.buckets.c.name)
            ).all()
        return [Bucket(r.name, r.account_id, r.region, r.created_at) for r in rows]

    def delete_bucket(self, name: str) -> list[str]:
        """Delete an empty bucket, aborting its in-progress uploads; returns their blob ids."""
        with self.db.write() as conn:
            if conn.dialect.name != "sqlite":
                # Waits for the writes into the bucket in progress (they share-lock it).
                conn.execute(select(t.buckets.c.name).where(t.buckets.c.name == name)
                             .with_for_update())
            if conn.execute(select(O.key).where(O.bucket == name).limit(1)).first():
                raise errors.BucketNotEmpty(BucketName=name)
            upload_ids = [
                r.upload_id
                for r in conn.execute(select(U.upload_id).where(U.bucket == name)).all()
            ]
            blobs = self._drop_uploads(conn, upload_ids)
            res = conn.execute(delete(t.buckets).where(t.buckets.c.name == name))
            if res.rowcount == 0:
                raise errors.NoSuchBucket(BucketName=name)
        return blobs

    def purge_account(self, account_id: int) -> list[str]:
        """Delete every bucket, object and upload of an account; returns the freed blob ids."""
        blobs: list[str] = []
        with self.db.write() as conn:
            names = [
                r.name
                for r in conn.execute(
                    select(t.buckets.c.name).where(t.buckets.c.account_id == account_id)
                ).all()
            ]
            for name in names:
                for r in conn.execute(select(O.segments).where(O.bucket == name)).all():
                    blobs.extend(b for b, _ in r.segments)
                conn.execute(delete(t.objects).where(O.bucket == name))
                upload_ids = [
                    r.upload_id
                    for r in conn.execute(select(U.upload_id).where(U.bucket == name)).all()
                ]
                blobs.extend(self._drop_uploads(conn, upload_ids))
            conn.execute(delete(t.buckets).where(t.buckets.c.account_id == account_id))
            conn.execute(
                update(t.accounts)
                .where(t.accounts.c.id == account_id)
                .values(bytes_used=0, objects_used=0)
            )
            self._storage_event(conn, account_id, 0, 0)
        return blobs

    # objects --------------------------------------------------------------------------
    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        row = self.hot.one(OBJECT_SQL, {"b": bucket, "k": key})
        return None if row is None else _record_from_tuple(bucket, row)

    def put_object(
        self,
        owner_id: int,
        rec: ObjectRecord,
        precondition: Callable[[ObjectRecord | None], None] | None = None,
    ) -> ObjectRecord | None:
        """Create or replace ``rec``; returns the replaced object, if any.

        ``precondition`` sees the current object inside the transaction and may raise to
        refuse the write (conditional writes). Raises NoSuchBucket if the bucket vanished,
        QuotaExceeded if the owner's quota would be exceeded; nothing is written then.
        """
        return self.db.transact(self._put_work(owner_id, rec, precondition))

    async def put_object_async(
        self,
        owner_id: int,
        rec: ObjectRecord,
        precondition: Callable[[ObjectRecord | None], None] | None = None,
    ) -> ObjectRecord | None:
        """:meth:`put_object` awaited on the event loop (no worker thread)."""
        return await self.db.transact_async(self._put_work(owner_id, rec, precondition))

    def _put_work(
        self,
        owner_id: int,
        rec: ObjectRecord,
        precondition: Callable[[ObjectRecord | None], None] | None,
    ) -> Callable[[Connection], ObjectRecord | None]:
        def work(conn: Connection) -> ObjectRecord | None:
            self._require_bucket(conn, rec.bucket)
            return self._put(conn, owner_id, rec, precondition)

        return work

    def _put(
        self,
        conn: Connection,
        owner_id: int,
        rec: ObjectRecord,
        precondition: Callable[[ObjectRecord | None], None] | None = None,
    ) -> ObjectRecord | None:
        if conn.dialect.name != "sqlite":
            _sql(conn, _LOCK_ACCOUNT, {"a": owner_id})
        row = _sql(conn, OBJECT_SQL, {"b": rec.bucket, "k": rec.key}).fetchone()
        old = None if row is None else _record_from_tuple(rec.bucket, tuple(row))
        if precondition is not None:
            precondition(old)
        d_bytes = rec.size - (old.size if old else 0)
        d_objects = 0 if old else 1
        self._charge(conn, owner_id, d_bytes, d_objects)
        _sql(conn, _UPSERT_OBJECT if old is None else _UPDATE_OBJECT, _raw_values(rec, conn))
        return old

    def set_tags(self, bucket: str, key: str, tags: dict[str, str]) -> bool:
        def work(conn: Connection) -> bool:
            res = conn.execute(
                update(t.objects)
                .where(and_(O.bucket == bucket, O.key == key))
                .values(tags=tags)
            )
            return bool(res.rowcount)

        return self.db.transact(work)

    def delete_objects(self, owner_id: int, bucket: str, keys: Sequence[str]) -> list[ObjectRecord]:
        """Delete the keys that exist; returns the deleted records (in one transaction)."""
        return self.db.transact(self._delete_work(owner_id, bucket, keys))

    async def delete_objects_async(
        self, owner_id: int, bucket: str, keys: Sequence[str]
    ) -> list[ObjectRecord]:
        """:meth:`delete_objects` awaited on the event loop (no worker thread)."""
        return await self.db.transact_async(self._delete_work(owner_id, bucket, keys))

    def _delete_work(
        self, owner_id: int, bucket: str, keys: Sequence[str]
    ) -> Callable[[Connection], list[ObjectRecord]]:
        def work(conn: Connection) -> list[ObjectRecord]:
            deleted: list[ObjectRecord] = []
            if conn.dialect.name != "sqlite":
                _sql(conn, _LOCK_ACCOUNT, {"a": owner_id})
            for key in keys:
                row = _sql(conn, OBJECT_SQL, {"b": bucket, "k": key}).fetchone()
                if row is None:
                    continue
                deleted.append(_record_from_tuple(bucket, tuple(row)))
                _sql(conn, _DELETE_OBJECT, {"b": bucket, "k": key})
            if deleted:
                self._charge(conn, owner_id, -sum(r.size for r in deleted), -len(deleted))
            return deleted

        return work

    def scan(self, bucket: str, start: str, inclusive: bool, limit: int) -> list[ListEntry]:
        """Up to ``limit`` objects with key > start (>= when inclusive), in byte order."""
        rows = self.hot.all(SCAN_SQL[inclusive], {"b": bucket, "s": start, "n": limit})
        return list(map(ListEntry._make, rows))

    # multipart ------------------------------------------------------------------------
    def create_upload(self, up: Upload) -> None:
        def work(conn: Connection) -> None:
            self._require_bucket(conn, up.bucket)
            conn.execute(
                insert(t.uploads).values(
                    upload_id=up.upload_id,
                    bucket=up.bucket,
                    key=up.key,
                    account_id=up.account_id,
                    initiated=up.initiated,
                    headers=up.headers,
                    tags=up.tags,
                    checksum_algorithm=up.checksum_algorithm,
                    checksum_type=up.checksum_type,
                )
            )

        self.db.transact(work)

    def get_upload(self, upload_id: str) -> Upload | None:
        with self.db.read() as conn:
            row = conn.execute(select(t.uploads).where(U.upload_id == upload_id)).first()
        return None if row is None else _upload(row)

    def put_part(self, upload_id: str, part: Part) -> str | None:
        """Record a part (replacing one with the same number); returns the replaced blob id.

        Raises NoSuchUpload if the upload was completed or aborted meanwhile.
        """
        def work(conn: Connection) -> str | None:
            # FOR SHARE (PostgreSQL): completing or aborting the upload waits for this part.
            if conn.execute(select(U.upload_id).where(U.upload_id == upload_id)
                            .with_for_update(read=True)).first() is None:
                raise errors.NoSuchUpload(UploadId=upload_id)
            old = conn.execute(
                select(P.blob_id).where(
                    and_(P.upload_id == upload_id, P.part_number == part.part_number)
                )
            ).first()
            values = {
                "blob_id": part.blob_id,
                "size": part.size,
                "etag": part.etag,
                "last_modified": part.last_modified,
                "checksums": part.checksums,
            }
            if old is None:
                conn.execute(
                    insert(t.parts).values(
                        upload_id=upload_id, part_number=part.part_number, **values
                    )
                )
            else:
                conn.execute(
                    update(t.parts)
                    .where(and_(P.upload_id == upload_id, P.part_number == part.part_number))
                    .values(**values)
                )
            return None if old is None else str(old.blob_id)

        return self.db.transact(work)

    def list_parts(self, upload_id: str, after: int = 0, limit: int | None = None) -> list[Part]:
        stmt = (
            select(t.parts)
            .where(and_(P.upload_id == upload_id, P.part_number > after))
            .order_by(P.part_number)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.read() as conn:
            return [_part(r) for r in conn.execute(stmt).all()]

    def complete_upload(
        self,
        owner_id: int,
        upload_id: str,
        rec: ObjectRecord,
        precondition: Callable[[ObjectRecord | None], None] | None = None,
    ) -> tuple[ObjectRecord | None, list[str]]:
        """Atomically: the object ``rec`` (made of some of the parts) replaces any existing
        one, the upload and its parts are gone. Returns (replaced object, unused part blobs)."""
        used = {s.blob_id for s in rec.segments}

        def work(conn: Connection) -> tuple[ObjectRecord | None, list[str]]:
            self._require_bucket(conn, rec.bucket)
            if conn.execute(select(U.upload_id).where(U.upload_id == upload_id)
                            .with_for_update()).first() is None:
                raise errors.NoSuchUpload(UploadId=upload_id)
            old = self._put(conn, owner_id, rec, precondition)
            unused = [
                r.blob_id
                for r in conn.execute(select(P.blob_id).where(P.upload_id == upload_id)).all()
                if r.blob_id not in used
            ]
            conn.execute(delete(t.parts).where(P.upload_id == upload_id))
            conn.execute(delete(t.uploads).where(U.upload_id == upload_id))
            return old, unused

        return self.db.transact(work)

    def abort_upload(self, upload_id: str) -> list[str]:
        def work(conn: Connection) -> list[str]:
            if conn.execute(select(U.upload_id).where(U.upload_id == upload_id)
                            .with_for_update()).first() is None:
                raise errors.NoSuchUpload(UploadId=upload_id)
            return self._drop_uploads(conn, [upload_id])

        return self.db.transact(work)

    def list_uploads(
        self,
        bucket: str,
        key_marker: str,
        upload_id_marker: str,
        limit: int,
        *,
        inclusive: bool = False,
    ) -> list[Upload]:
        """Uploads ordered by (key, upload id) after the markers (key >= marker if inclusive)."""
        if inclusive:
            cond = U.key >= key_marker
        elif upload_id_marker:
            cond = (U.key > key_marker) | and_(U.key == key_marker, U.upload_id > upload_id_marker)
        else:
            cond = U.key > key_marker
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.uploads)
                .where(and_(U.bucket == bucket, cond))
                .order_by(U.key, U.upload_id)
                .limit(limit)
            ).all()
        return [_upload(r) for r in rows]

    # housekeeping ---------------------------------------------------------------------
    def referenced_blobs(self) -> set[str]:
        live: set[str] = set()
        with self.db.read() as conn:
            for r in conn.execute(select(O.segments)):
                live.update(b for b, _ in r.segments)
            for r in conn.execute(select(P.blob_id)):
                live.add(r.blob_id)
        return live

    # helpers --------------------------------------------------------------------------
    def _require_bucket(self, conn: Connection, bucket: str) -> None:
        statement = BUCKET_SQL if conn.dialect.name == "sqlite" else _REQUIRE_BUCKET
        if _sql(conn, statement, {"b": bucket}).fetchone() is None:
            raise errors.NoSuchBucket(BucketName=bucket)

    def _charge(self, conn: Connection, owner_id: int, d_bytes: int, d_objects: int) -> None:
        quota_bytes, quota_objects, bytes_used, objects_used = _sql(
            conn, _ACCOUNT_USAGE, {"a": owner_id}).fetchone()
        if d_bytes > 0 and quota_bytes is not None and bytes_used + d_bytes > quota_bytes:
            raise errors.QuotaExceeded(
                f"This write needs {d_bytes} more bytes; the account uses {bytes_used} of "
                f"its {quota_bytes}-byte quota."
            )
        if d_objects > 0 and quota_objects is not None and objects_used + d_objects > quota_objects:
            raise errors.QuotaExceeded(
                f"The account already holds {objects_used} of its {quota_objects}-object quota."
            )
        if d_bytes or d_objects:
            _sql(conn, _CHARGE, {"a": owner_id, "db": d_bytes, "do": d_objects})
            self._storage_event(conn, owner_id, bytes_used + d_bytes, objects_used + d_objects)

    def _storage_event(self, conn: Connection, account_id: int, bytes_used: int,
                       objects_used: int) -> None:
        self.db.lock_storage_events(conn, exclusive=False)
        _sql(conn, _STORAGE_EVENT, {"a": account_id, "t": time.time_ns() // 1_000_000,
                                    "b": bytes_used, "o": objects_used})

    def _drop_uploads(self, conn: Connection, upload_ids: Iterable[str]) -> list[str]:
        blobs: list[str] = []
        for uid in upload_ids:
            blobs.extend(
                r.blob_id for r in conn.execute(select(P.blob_id).where(P.upload_id == uid)).all()
            )
            conn.execute(delete(t.parts).where(P.upload_id == uid))
            conn.execute(delete(t.uploads).where(U.upload_id == uid))
        return blobs
