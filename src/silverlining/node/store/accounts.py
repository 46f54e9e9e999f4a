"""Accounts and access keys in the metadata database."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from silverlining.node.domain.model import AccessKey, Account
from silverlining.node.store import schema as t
from silverlining.node.store.db import Database
from silverlining.node.store.hotpath import KEY_SQL, HotReads


class AlreadyExists(Exception):
    pass


class NotFound(Exception):
    pass


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        name=row.name,
        canonical_id=row.canonical_id,
        created_at=row.created_at,
        quota_bytes=row.quota_bytes,
        quota_objects=row.quota_objects,
        bytes_used=row.bytes_used,
        objects_used=row.objects_used,
    )


class AccountRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hot = HotReads(db)

    # accounts -------------------------------------------------------------------------
    def create(self, name: str, canonical_id: str) -> Account:
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(t.accounts).values(
                        name=name,
                        canonical_id=canonical_id,
                        created_at=time.time(),
                        bytes_used=0,
                        objects_used=0,
                    )
                )
                row = conn.execute(select(t.accounts).where(t.accounts.c.name == name)).one()
        except IntegrityError as exc:
            raise AlreadyExists(name) from exc
        return _account(row)

    def get(self, name: str) -> Account:
        with self.db.read() as conn:
            row = conn.execute(select(t.accounts).where(t.accounts.c.name == name)).first()
        if row is None:
            raise NotFound(name)
        return _account(row)

    def get_by_id(self, account_id: int) -> Account:
        with self.db.read() as conn:
            row = conn.execute(select(t.accounts).where(t.accounts.c.id == account_id)).first()
        if row is None:
            raise NotFound(str(account_id))
        return _account(row)

    def all(self) -> list[Account]:
        with self.db.read() as conn:
            rows = conn.execute(select(t.accounts).order_by(t.accounts.c.name)).all()
        return [_account(r) for r in rows]

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.accounts)).scalar_one())

    def set_quota(self, name: str, quota_bytes: int | None, quota_objects: int | None) -> Account:
        with self.db.write() as conn:
            res = conn.execute(
                update(t.accounts)
                .where(t.accounts.c.name == name)
                .values(quota_bytes=quota_bytes, quota_objects=quota_objects)
            )
            if res.rowcount == 0:
                raise NotFound(name)
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete an account with no buckets left, and its keys."""
        with self.db.write() as conn:
            row = conn.execute(select(t.accounts.c.id).where(t.accounts.c.name == name)).first()
            if row is None:
                raise NotFound(name)
            conn.execute(delete(t.access_keys).where(t.access_keys.c.account_id == row.id))
            conn.execute(delete(t.accounts).where(t.accounts.c.id == row.id))

    # keys -----------------------------------------------------------------------------
    def add_key(self, account_name: str, access_key_id: str, secret_enc: bytes) -> AccessKey:
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(
                select(t.accounts.c.id).where(t.accounts.c.name == account_name)
            ).first()
            if row is None:
                raise NotFound(account_name)
            conn.execute(
                insert(t.access_keys).values(
                    access_key_id=access_key_id,
                    account_id=row.id,
                    secret_enc=secret_enc,
                    created_at=now,
                )
            )
        return AccessKey(access_key_id, account_name, now)

    def list_keys(self, account_name: str | None = None) -> list[AccessKey]:
        stmt = (
            select(t.access_keys, t.accounts.c.name)
            .join(t.accounts, t.accounts.c.id == t.access_keys.c.account_id)
            .order_by(t.access_keys.c.created_at)
        )
        if account_name is not None:
            stmt = stmt.where(t.accounts.c.name == account_name)
        with self.db.read() as conn:
            rows: Sequence[Row[Any]] = conn.execute(stmt).all()
        return [AccessKey(r.access_key_id, r.name, r.created_at, r.revoked_at) for r in rows]

    def revoke_key(self, access_key_id: str) -> AccessKey:
        with self.db.write() as conn:
            res = conn.execute(
                update(t.access_keys)
                .where(t.access_keys.c.access_key_id == access_key_id)
                .where(t.access_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            if res.rowcount == 0:
                exists = conn.execute(
                    select(t.access_keys.c.access_key_id).where(
                        t.access_keys.c.access_key_id == access_key_id
                    )
                ).first()
                if exists is None:
                    raise NotFound(access_key_id)
        keys = [k for k in self.list_keys() if k.access_key_id == access_key_id]
        return keys[0]

    def lookup_key(self, access_key_id: str) -> tuple[Account, bytes] | None:
        """The account and encrypted secret of an active key; None if unknown or revoked.
        Read fresh on every call (every request): revocation takes effect at once."""
        row = self.hot.one(KEY_SQL, {"k": access_key_id})
        if row is None or row[1] is not None:
            return None
        return Account(*row[2:]), bytes(row[0])
