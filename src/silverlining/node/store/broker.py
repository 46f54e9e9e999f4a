"""Broker credentials, service instances and bindings in the metadata database.

Every method is one transaction. The ones that change a tenant change the account, its keys
and the instance/binding rows together, so a crash never leaves a tenant without its
instance row or a key that no binding accounts for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from silverlining.node.store import schema as t
from silverlining.node.store.db import Database

I = t.service_instances.c  # noqa: E741 - column namespace shorthand
B = t.service_bindings.c
K = t.access_keys.c
A = t.accounts.c

PROVISIONED = "provisioned"
DEPROVISIONING = "deprovisioning"
DEPROVISIONED = "deprovisioned"

IN_PROGRESS = "in progress"
SUCCEEDED = "succeeded"
FAILED = "failed"


class NameTaken(Exception):
    """The account name derived for a new instance is already used."""


class BindingsExist(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


class OverQuota(Exception):
    def __init__(self, bytes_used: int, objects_used: int) -> None:
        super().__init__(bytes_used, objects_used)
        self.bytes_used = bytes_used
        self.objects_used = objects_used


class NotProvisioned(Exception):
    """The instance exists but is not in the ``provisioned`` state (being deprovisioned)."""

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance.instance_id)
        self.instance = instance


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    account_id: int
    account_name: str
    service_id: str
    plan_id: str
    request: dict[str, Any]
    parameters: dict[str, Any]
    state: str
    created_at: float
    updated_at: float
    deleted_at: float | None
    op_id: str | None
    op_type: str
    op_state: str
    op_description: str | None


@dataclass(frozen=True, slots=True)
class Binding:
    instance_id: str
    binding_id: str
    access_key_id: str
    #: The key's secret, encrypted with the node key (None if the key row is gone).
    secret_enc: bytes | None
    request: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class TenantUsage:
    bytes_used: int
    objects_used: int


def _instance(row: Row[Any]) -> Instance:
    return Instance(
        instance_id=row.instance_id,
        account_id=row.account_id,
        account_name=row.account_name,
        service_id=row.service_id,
        plan_id=row.plan_id,
        request=row.request,
        parameters=row.parameters,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        op_id=row.op_id,
        op_type=row.op_type,
        op_state=row.op_state,
        op_description=row.op_description,
    )


class BrokerRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._binding_stmt = (
            select(t.service_bindings, K.secret_enc)
            .select_from(t.service_bindings.outerjoin(
                t.access_keys, K.access_key_id == B.access_key_id))
        )

    # credentials -------------------------------------------------------------------------
    def get_credentials(self) -> tuple[str, str] | None:
        """(username, password hash), or None when the operator has not set them."""
        with self.db.read() as conn:
            row = conn.execute(
                select(t.broker_credentials.c.username, t.broker_credentials.c.password_hash)
                .where(t.broker_credentials.c.id == 1)
            ).first()
        return None if row is None else (row.username, row.password_hash)

    def set_credentials(self, username: str, password_hash: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(t.broker_credentials))
            conn.execute(insert(t.broker_credentials).values(
                id=1, username=username, password_hash=password_hash, updated_at=time.time()))

    # instances ---------------------------------------------------------------------------
    def get_instance(self, instance_id: str) -> Instance | None:
        with self.db.read() as conn:
            return self._get(conn, instance_id)

    def list_instances(self) -> list[Instance]:
        with self.db.read() as conn:
            rows = conn.execute(select(t.service_instances).order_by(I.created_at)).all()
        return [_instance(r) for r in rows]

    def instances_of_account(self, account_id: int) -> list[Instance]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.service_instances).where(I.account_id == account_id)).all()
        return [_instance(r) for r in rows]

    def create_instance(
        self,
        instance_id: str,
        *,
        account_name: str,
        canonical_id: str,
        service_id: str,
        plan_id: str,
        request: dict[str, Any],
        parameters: dict[str, Any],
        quota_bytes: int | None,
        quota_objects: int | None,
    ) -> tuple[Instance, bool]:
        """Create the tenant account and its instance row; or, if the instance id is already
        known, return the existing instance. Returns (instance, created)."""
        now = time.time()
        try:
            with self.db.write() as conn:
                existing = self._get(conn, instance_id)
                if existing is not None:
                    return existing, False
                if conn.execute(select(A.id).where(A.name == account_name)).first():
                    raise NameTaken(account_name)
                key = conn.execute(insert(t.accounts).values(
                    name=account_name, canonical_id=canonical_id, created_at=now,
                    quota_bytes=quota_bytes, quota_objects=quota_objects,
                    bytes_used=0, objects_used=0,
                )).inserted_primary_key
                assert key is not None
                account_id = int(key[0])
                conn.execute(insert(t.service_instances).values(
                    instance_id=instance_id, account_id=account_id,
                    account_name=account_name, service_id=service_id, plan_id=plan_id,
                    request=request, parameters=parameters, state=PROVISIONED,
                    created_at=now, updated_at=now, deleted_at=None, op_id=None,
                    op_type="provision", op_state=SUCCEEDED, op_description=None,
                ))
                created = self._get(conn, instance_id)
                assert created is not None
                return created, True
        except IntegrityError:
            # A concurrent request (another process, on PostgreSQL) created it first.
            found = self.get_instance(instance_id)
            if found is None:
                raise
            return found, False

    def change_plan(self, instance_id: str, plan_id: str, quota_bytes: int | None,
                    quota_objects: int | None) -> Instance:
        """Move a provisioned instance to another plan and apply its quotas to the account.
        Raises OverQuota (nothing changed) if the tenant already stores more than allowed."""
        with self.db.write() as conn:
            inst = self._require_provisioned(conn, instance_id)
            usage = self._usage(conn, inst.account_id)
            if (quota_bytes is not None and usage.bytes_used > quota_bytes) or (
                    quota_objects is not None and usage.objects_used > quota_objects):
                raise OverQuota(usage.bytes_used, usage.objects_used)
            conn.execute(update(t.accounts).where(A.id == inst.account_id).values(
                quota_bytes=quota_bytes, quota_objects=quota_objects))
            conn.execute(update(t.service_instances).where(I.instance_id == instance_id).values(
                plan_id=plan_id, updated_at=time.time(), op_id=None, op_type="update",
                op_state=SUCCEEDED, op_description=None))
            changed = self._get(conn, instance_id)
            assert changed is not None
            return changed

    def start_deprovision(self, instance_id: str, op_id: str) -> tuple[Instance, TenantUsage]:
        """Refuse while bindings exist (BindingsExist); otherwise revoke every key of the
        tenant and mark the instance ``deprovisioning`` with operation ``op_id`` in progress.
        Raises KeyError if the instance is unknown. An instance already deprovisioning or
        deprovisioned is returned unchanged (the caller decides what that means)."""
        with self.db.write() as conn:
            inst = self._get(conn, instance_id)
            if inst is None:
                raise KeyError(instance_id)
            if inst.state == DEPROVISIONED or (
                    inst.state == DEPROVISIONING and inst.op_state == IN_PROGRESS):
                return inst, self._usage(conn, inst.account_id)
            bindings = conn.execute(
                select(func.count()).select_from(t.service_bindings)
                .where(B.instance_id == instance_id)).scalar_one()
            if bindings:
                raise BindingsExist(int(bindings))
            now = time.time()
            conn.execute(update(t.access_keys).where(and_(
                K.account_id == inst.account_id, K.revoked_at.is_(None))).values(revoked_at=now))
            conn.execute(update(t.service_instances).where(I.instance_id == instance_id).values(
                state=DEPROVISIONING, updated_at=now, op_id=op_id, op_type="deprovision",
                op_state=IN_PROGRESS, op_description="revoked the tenant's keys"))
            started = self._get(conn, instance_id)
            assert started is not None
            return started, self._usage(conn, inst.account_id)

    def set_progress(self, instance_id: str, op_id: str, description: str) -> None:
        with self.db.write() as conn:
            conn.execute(update(t.service_instances).where(and_(
                I.instance_id == instance_id, I.op_id == op_id)).values(
                op_description=description, updated_at=time.time()))

    def finish_deprovision(self, instance_id: str, op_id: str, *, ok: bool,
                           description: str) -> None:
        now = time.time()
        values: dict[str, Any] = {"op_state": SUCCEEDED if ok else FAILED,
                                  "op_description": description, "updated_at": now}
        if ok:
            values.update(state=DEPROVISIONED, deleted_at=now)
        with self.db.write() as conn:
            conn.execute(update(t.service_instances).where(and_(
                I.instance_id == instance_id, I.op_id == op_id)).values(**values))

    def pending_deprovisions(self) -> list[Instance]:
        with self.db.read() as conn:
            rows = conn.execute(select(t.service_instances).where(and_(
                I.state == DEPROVISIONING, I.op_state == IN_PROGRESS))).all()
        return [_instance(r) for r in rows]

    def tenant_usage(self, account_id: int) -> TenantUsage:
        with self.db.read() as conn:
            return self._usage(conn, account_id)

    def truncate_log(self) -> bool:
        """SQLite: checkpoint the write-ahead log and truncate it, so page images of rows just
        deleted (small objects are stored inline) do not linger in ``meta.db-wal``. (In the
        database file itself SQLite erases deleted content when ``secure_delete`` is on.)
        Waits for readers on older snapshots; returns False if it could not complete."""
        if not self.db.is_sqlite:
            return True
        raw = self.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            row = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cur.close()
        finally:
            raw.close()
        return row is not None and row[0] == 0

    # bindings ----------------------------------------------------------------------------
    def get_binding(self, instance_id: str, binding_id: str) -> Binding | None:
        with self.db.read() as conn:
            return self._get_binding(conn, instance_id, binding_id)

    def count_bindings(self, instance_id: str) -> int:
        with self.db.read() as conn:
            return int(conn.execute(
                select(func.count()).select_from(t.service_bindings)
                .where(B.instance_id == instance_id)).scalar_one())

    def create_binding(self, instance_id: str, binding_id: str, *, access_key_id: str,
                       secret_enc: bytes, request: dict[str, Any]) -> tuple[Binding, bool]:
        """Issue an access key for the instance's tenant and record the binding; or return
        the existing binding with this id. Raises KeyError for an unknown instance and
        NotProvisioned for one being deprovisioned. Returns (binding, created)."""
        try:
            with self.db.write() as conn:
                inst = self._get(conn, instance_id)
                if inst is None or inst.state == DEPROVISIONED:
                    raise KeyError(instance_id)
                existing = self._get_binding(conn, instance_id, binding_id)
                if existing is not None:
                    return existing, False
                if inst.state != PROVISIONED:
                    raise NotProvisioned(inst)
                now = time.time()
                conn.execute(insert(t.access_keys).values(
                    access_key_id=access_key_id, account_id=inst.account_id,
                    secret_enc=secret_enc, created_at=now))
                conn.execute(insert(t.service_bindings).values(
                    instance_id=instance_id, binding_id=binding_id,
                    access_key_id=access_key_id, request=request, created_at=now))
                made = self._get_binding(conn, instance_id, binding_id)
                assert made is not None
                return made, True
        except IntegrityError:
            found = self.get_binding(instance_id, binding_id)
            if found is None:
                raise
            return found, False

    def delete_binding(self, instance_id: str, binding_id: str) -> Binding | None:
        """Revoke the binding's key and forget the binding (one transaction: from the commit
        on, the key is refused). Returns the binding, or None if there was none."""
        with self.db.write() as conn:
            found = self._get_binding(conn, instance_id, binding_id)
            if found is None:
                return None
            conn.execute(update(t.access_keys).where(and_(
                K.access_key_id == found.access_key_id, K.revoked_at.is_(None))).values(
                revoked_at=time.time()))
            conn.execute(delete(t.service_bindings).where(and_(
                B.instance_id == instance_id, B.binding_id == binding_id)))
            return found

    # helpers -----------------------------------------------------------------------------
    def _get(self, conn: Connection, instance_id: str) -> Instance | None:
        row = conn.execute(
            select(t.service_instances).where(I.instance_id == instance_id)).first()
        return None if row is None else _instance(row)

    def _require_provisioned(self, conn: Connection, instance_id: str) -> Instance:
        inst = self._get(conn, instance_id)
        if inst is None or inst.state == DEPROVISIONED:
            raise KeyError(instance_id)
        if inst.state != PROVISIONED:
            raise NotProvisioned(inst)
        return inst

    def _get_binding(self, conn: Connection, instance_id: str,
                     binding_id: str) -> Binding | None:
        row = conn.execute(self._binding_stmt.where(and_(
            B.instance_id == instance_id, B.binding_id == binding_id))).first()
        if row is None:
            return None
        return Binding(row.instance_id, row.binding_id, row.access_key_id, row.secret_enc,
                       row.request, row.created_at)

    def _usage(self, conn: Connection, account_id: int) -> TenantUsage:
        row = conn.execute(
            select(A.bytes_used, A.objects_used).where(A.id == account_id)).first()
        return TenantUsage(0, 0) if row is None else TenantUsage(row.bytes_used,
                                                                  row.objects_used)
