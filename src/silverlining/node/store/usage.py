"""Usage per account and metering period, and the bookkeeping that makes it exact.

Two sources feed ``usage_periods``:

- **Requests and bytes** come from the per-process journals (see ``metering_journal.py``).
  :meth:`UsageRepository.apply_journal` folds a slice of a journal and advances that journal's
  consumed offset *in the same transaction*, so every record is counted exactly once whatever
  crashes when.
- **Stored byte-time** comes from ``storage_events`` (one row per change of an account's
  stored bytes, written in the transaction of the change). :meth:`fold_storage` integrates
  them over one period, exactly, in integer byte-milliseconds, when the period is closed, and
  carries each account's stored bytes over to the next period.

A period ``[s, s + P)`` is *closed* once ``folded_until_ms >= s + P``: its row never changes
again. A journal record that turns up later for a closed period (only possible if a process
stalled between timestamping and writing it) is counted in the oldest open period instead,
so totals stay exact and closed periods stay immutable.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from silverlining.node.store import schema as t
from silverlining.node.store.db import Database

U = t.usage_periods.c
I = t.service_instances.c  # noqa: E741 - column namespace shorthand
J = t.metering_journals.c
S = t.metering_state.c
C = t.metering_storage.c
E = t.storage_events.c

#: (account_id, period_start_ms) -> [requests_read, requests_write, bytes_in, bytes_out]
Counters = dict[tuple[int, int], list[int]]

_EVENT_BATCH = 5000


class PeriodMismatch(Exception):
    """The data directory meters with another period length than the one asked for."""

    def __init__(self, stored_ms: int, wanted_ms: int) -> None:
        super().__init__(stored_ms, wanted_ms)
        self.stored_ms = stored_ms
        self.wanted_ms = wanted_ms


@dataclass(frozen=True, slots=True)
class MeteringState:
    period_ms: int
    #: Every period ending at or before this is closed; None before the first fold.
    folded_until_ms: int | None
    #: The last storage_events id folded.
    event_cursor: int


@dataclass(frozen=True, slots=True)
class UsageRow:
    account_id: int
    period_start_ms: int
    requests_read: int
    requests_write: int
    bytes_in: int
    bytes_out: int
    #: Exact stored byte-milliseconds; None while the period is open.
    stored_byte_ms: int | None
    stored_bytes_end: int | None


def period_start(ts_ms: int, period_ms: int) -> int:
    return ts_ms - ts_ms % period_ms


def _row(r: Any) -> UsageRow:
    return UsageRow(
        int(r.account_id), int(r.period_start_ms), int(r.requests_read),
        int(r.requests_write), int(r.bytes_in), int(r.bytes_out),
        None if r.stored_byte_ms is None else int(r.stored_byte_ms),
        None if r.stored_bytes_end is None else int(r.stored_bytes_end),
    )


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # state -------------------------------------------------------------------------------
    def ensure_period(self, period_ms: int) -> None:
        """Fix the period length of this data directory on first use; raise PeriodMismatch
        if it was fixed to another length (records of two lengths cannot be one series)."""
        try:
            with self.db.write() as conn:
                stored = self._get_state(conn, "period_ms")
                if stored is None:
                    conn.execute(insert(t.metering_state).values(key="period_ms",
                                                                 value=period_ms))
        except IntegrityError:
            # Another node sharing the database fixed it first (PostgreSQL: both read
            # nothing, one insert wins); what it fixed is what counts.
            stored = None
        if stored is None:
            with self.db.read() as conn:
                stored = self._get_state(conn, "period_ms")
        if stored is not None and stored != period_ms:
            raise PeriodMismatch(stored, period_ms)

    def state(self) -> MeteringState | None:
        """None if metering never ran in this data directory."""
        with self.db.read() as conn:
            return self._state(conn)

    # journals ----------------------------------------------------------------------------
    def journal_offsets(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {r.name: r.consumed for r in conn.execute(select(J.name, J.consumed))}

    def apply_journal(self, name: str, fold: Callable[[int], tuple[int, Counters]]) -> int:
        """In one transaction: read the journal's consumed offset, call ``fold(offset)`` for
        (new offset, counters), add the counters and store the new offset. Returns it."""
        with self.db.write() as conn:
            # SQLite serialises writers (BEGIN IMMEDIATE); on PostgreSQL these row locks keep
            # two aggregators from folding the same slice, and a period from being closed
            # while counters are being added to it.
            self._lock_state(conn, exclusive=False)
            row = conn.execute(
                select(J.consumed).where(J.name == name).with_for_update()).first()
            consumed = 0 if row is None else int(row.consumed)
            new_offset, counters = fold(consumed)
            if new_offset == consumed:
                return consumed
            state = self._state(conn)
            if state is not None and state.folded_until_ms is not None and counters:
                counters = _reopen(counters, state.period_ms, state.folded_until_ms)
            self._add_counters(conn, counters)
            if row is None:
                conn.execute(insert(t.metering_journals).values(
                    name=name, consumed=new_offset, updated_at=time.time()))
            else:
                conn.execute(update(t.metering_journals).where(J.name == name).values(
                    consumed=new_offset, updated_at=time.time()))
            return new_offset

    def forget_journal(self, name: str) -> None:
        """Drop a journal's offset row, once its file is gone (delete the file first: the
        other order would count the file again after a crash in between)."""
        with self.db.write() as conn:
            conn.execute(delete(t.metering_journals).where(J.name == name))

    # storage -----------------------------------------------------------------------------
    def fold_storage(self, period_ms: int, closable_until_ms: int) -> bool:
        """Close the oldest open period if it ends at or before ``closable_until_ms``: write
        every account's exact stored byte-milliseconds for it. Returns False when there was
        nothing to close (or another process just closed it)."""
        with self.db.write() as conn:
            self._lock_state(conn, exclusive=True)
            # No storage event may be in flight while the cursor advances (PostgreSQL).
            self.db.lock_storage_events(conn, exclusive=True)
            state = self._state(conn)
            if state is None or state.period_ms != period_ms:
                return False
            start = state.folded_until_ms
            if start is None:
                start = self._first_period(conn, period_ms, closable_until_ms)
            start = self._skip_empty(conn, state.event_cursor, start, period_ms,
                                     closable_until_ms)
            end = start + period_ms
            if end > closable_until_ms:
                if state.folded_until_ms is None:
                    self._set_state(conn, "folded_until_ms", start)
                return False
            cursor = state.event_cursor
            carry = {r.account_id: (int(r.bytes_used), int(r.objects_used))
                     for r in conn.execute(select(C.account_id, C.bytes_used, C.objects_used))}
            byte_ms: dict[int, int] = defaultdict(int)
            last: dict[int, int] = {}
            touched: set[int] = set()
            done = False
            while not done:
                rows = conn.execute(
                    select(E.id, E.account_id, E.ts_ms, E.bytes_used, E.objects_used)
                    .where(E.id > cursor).order_by(E.id).limit(_EVENT_BATCH)).all()
                for r in rows:
                    if r.ts_ms >= end:
                        done = True
                        break
                    acct = int(r.account_id)
                    since = last.get(acct, start)
                    # A late event (clock step, slow commit) counts from the period start.
                    at = max(int(r.ts_ms), since)
                    byte_ms[acct] += carry.get(acct, (0, 0))[0] * (at - since)
                    last[acct] = at
                    carry[acct] = (int(r.bytes_used), int(r.objects_used))
                    touched.add(acct)
                    cursor = int(r.id)
                if len(rows) < _EVENT_BATCH:
                    done = True
            for acct, (stored, _objects) in carry.items():
                byte_ms[acct] += stored * (end - last.get(acct, start))
            rows_out = [
                {"account_id": acct, "period_start_ms": start, "stored_byte_ms": str(byte_ms[acct]),
                 "stored_bytes_end": carry[acct][0]}
                for acct in sorted(set(carry) | touched)
                if byte_ms[acct] > 0 or acct in touched
            ]
            self._set_storage(conn, rows_out)
            for acct in touched:
                conn.execute(delete(t.metering_storage).where(C.account_id == acct))
                b, o = carry[acct]
                if b or o:
                    conn.execute(insert(t.metering_storage).values(
                        account_id=acct, bytes_used=b, objects_used=o))
            self._set_state(conn, "folded_until_ms", end)
            self._set_state(conn, "event_cursor", cursor)
            return True

    def open_storage(self, account_ids: Iterable[int]
                     ) -> tuple[dict[int, int], dict[int, list[tuple[int, int]]]]:
        """For provisional (open-period) figures: each account's stored bytes at
        ``folded_until_ms``, and its storage events not yet folded as (ts_ms, bytes_used), in
        order."""
        wanted = set(account_ids)
        with self.db.read() as conn:
            state = self._state(conn)
            cursor = 0 if state is None else state.event_cursor
            carry = {int(r.account_id): int(r.bytes_used)
                     for r in conn.execute(select(C.account_id, C.bytes_used))
                     if r.account_id in wanted}
            events: dict[int, list[tuple[int, int]]] = {}
            for e in conn.execute(select(E.account_id, E.ts_ms, E.bytes_used)
                                  .where(E.id > cursor).order_by(E.id)):
                if e.account_id in wanted:
                    events.setdefault(int(e.account_id), []).append(
                        (int(e.ts_ms), int(e.bytes_used)))
        return carry, events

    # queries -----------------------------------------------------------------------------
    def account_rows(self, account_id: int, since_ms: int, until_ms: int) -> list[UsageRow]:
        """Rows of an account with ``since_ms <= period_start_ms < until_ms``, in order."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.usage_periods).where(and_(
                    U.account_id == account_id, U.period_start_ms >= since_ms,
                    U.period_start_ms < until_ms)).order_by(U.period_start_ms)).all()
        return [_row(r) for r in rows]

    def rows_by_account(self, account_ids: list[int], since_ms: int,
                        until_ms: int) -> dict[int, list[UsageRow]]:
        out: dict[int, list[UsageRow]] = {}
        with self.db.read() as conn:
            for i in range(0, len(account_ids), 500):
                for r in conn.execute(select(t.usage_periods).where(and_(
                        U.account_id.in_(account_ids[i:i + 500]),
                        U.period_start_ms >= since_ms, U.period_start_ms < until_ms))
                        .order_by(U.period_start_ms)):
                    out.setdefault(int(r.account_id), []).append(_row(r))
        return out

    def instance_accounts(self, instance_id: str | None) -> list[tuple[str, int]]:
        """(instance id, account id) of one service instance, or of all of them."""
        stmt = select(I.instance_id, I.account_id).order_by(I.instance_id)
        if instance_id is not None:
            stmt = stmt.where(I.instance_id == instance_id)
        with self.db.read() as conn:
            return [(r.instance_id, int(r.account_id)) for r in conn.execute(stmt)]

    def instance_rows(self, account_ids: list[int], since_ms: int, until_ms: int,
                      limit: int) -> tuple[list[UsageRow], int | None]:
        """Rows of these accounts in [since, until), ordered by (period, account), cut at a
        period boundary after about ``limit`` rows. Returns (rows, where the next page starts
        or None)."""
        if not account_ids or since_ms >= until_ms:
            return [], None
        # The accounts of one instance, or (for many) of every service instance.
        ids: Any = account_ids if len(account_ids) <= 500 else select(I.account_id)
        base = select(t.usage_periods).where(and_(
            U.account_id.in_(ids), U.period_start_ms >= since_ms, U.period_start_ms < until_ms))
        with self.db.read() as conn:
            rows = conn.execute(base.order_by(U.period_start_ms, U.account_id)
                                .limit(limit + 1)).all()
            if len(rows) <= limit:
                return [_row(r) for r in rows], None
            boundary = int(rows[limit].period_start_ms)
            keep = [_row(r) for r in rows if r.period_start_ms < boundary]
            if keep:
                return keep, boundary
            # One period holds more rows than a page: return that whole period.
            whole = conn.execute(base.where(U.period_start_ms == boundary)
                                 .order_by(U.account_id)).all()
            after = conn.execute(select(U.period_start_ms).where(and_(
                U.account_id.in_(ids), U.period_start_ms > boundary,
                U.period_start_ms < until_ms)).order_by(U.period_start_ms).limit(1)).first()
        return [_row(r) for r in whole], None if after is None else int(after.period_start_ms)

    # helpers -----------------------------------------------------------------------------
    def _state(self, conn: Connection) -> MeteringState | None:
        values = {r.key: int(r.value) for r in conn.execute(select(S.key, S.value))}
        if "period_ms" not in values:
            return None
        return MeteringState(values["period_ms"], values.get("folded_until_ms"),
                             values.get("event_cursor", 0))

    def _lock_state(self, conn: Connection, *, exclusive: bool) -> None:
        # FOR SHARE / FOR UPDATE on the period row (PostgreSQL; SQLite renders neither).
        conn.execute(select(S.value).where(S.key == "period_ms")
                     .with_for_update(read=not exclusive))

    def _get_state(self, conn: Connection, key: str) -> int | None:
        row = conn.execute(select(S.value).where(S.key == key)).first()
        return None if row is None else int(row.value)

    def _set_state(self, conn: Connection, key: str, value: int) -> None:
        if conn.execute(update(t.metering_state).where(S.key == key).values(value=value)
                        ).rowcount == 0:
            conn.execute(insert(t.metering_state).values(key=key, value=value))

    def _skip_empty(self, conn: Connection, cursor: int, start: int, period_ms: int,
                    closable_until_ms: int) -> int:
        """Where folding must resume: periods in which nothing was stored at all (no bytes
        carried over, no event) have no byte-time to record, so a long idle stretch is crossed
        in one step instead of one transaction per period."""
        if conn.execute(select(C.account_id).limit(1)).first() is not None:
            return start
        nxt = conn.execute(select(E.ts_ms).where(E.id > cursor).order_by(E.id).limit(1)).first()
        target = period_start(closable_until_ms, period_ms) - period_ms
        if nxt is not None:
            target = min(target, period_start(int(nxt.ts_ms), period_ms))
        return max(start, target)

    def _first_period(self, conn: Connection, period_ms: int, now_ms: int) -> int:
        """Where folding starts: the period of the first storage event not yet folded (or
        of ``now_ms`` on a node that never stored anything)."""
        first = conn.execute(select(E.ts_ms).order_by(E.id).limit(1)).first()
        ts = now_ms if first is None else min(int(first.ts_ms), now_ms)
        return period_start(ts, period_ms)

    def _add_counters(self, conn: Connection, counters: Counters) -> None:
        if not counters:
            return
        params = [
            {"account_id": acct, "period_start_ms": start, "requests_read": c[0],
             "requests_write": c[1], "bytes_in": c[2], "bytes_out": c[3]}
            for (acct, start), c in sorted(counters.items())
        ]
        stmt = _dialect_insert(conn, t.usage_periods)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[U.account_id, U.period_start_ms],
            set_={
                "requests_read": U.requests_read + stmt.excluded.requests_read,
                "requests_write": U.requests_write + stmt.excluded.requests_write,
                "bytes_in": U.bytes_in + stmt.excluded.bytes_in,
                "bytes_out": U.bytes_out + stmt.excluded.bytes_out,
            },
        ), params)

    def _set_storage(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        params = [{**r, "requests_read": 0, "requests_write": 0, "bytes_in": 0, "bytes_out": 0}
                  for r in rows]
        stmt = _dialect_insert(conn, t.usage_periods)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[U.account_id, U.period_start_ms],
            set_={"stored_byte_ms": stmt.excluded.stored_byte_ms,
                  "stored_bytes_end": stmt.excluded.stored_bytes_end},
        ), params)


def _dialect_insert(conn: Connection, table: Any) -> Any:
    # INSERT ... ON CONFLICT DO UPDATE exists in both SQLite (3.24+) and PostgreSQL; SQLAlchemy
    # spells it per dialect.
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _reopen(counters: Counters, period_ms: int, folded_until_ms: int) -> Counters:
    """Move counters of closed periods to the oldest open one (closed rows are immutable)."""
    out: Counters = {}
    for (acct, start), c in counters.items():
        key = (acct, start if start >= folded_until_ms else folded_until_ms)
        if key in out:
            out[key] = [a + b for a, b in zip(out[key], c, strict=True)]
        else:
            out[key] = list(c)
    return out


def integrate_open(stored_at_fold: int, events: list[tuple[int, int]], from_ms: int,
                   until_ms: int, period_ms: int) -> dict[int, tuple[int, int]]:
    """Provisional stored byte-ms per period over ``[from_ms, until_ms)`` (the open part of
    the series), from the bytes stored at ``from_ms`` and later events (ts_ms, bytes_used).
    Returns period_start -> (byte_ms, bytes stored at until_ms or the period end)."""
    out: dict[int, tuple[int, int]] = {}
    if until_ms <= from_ms:
        return out
    stored = stored_at_fold
    at = from_ms
    marks = [(max(ts, from_ms), b) for ts, b in events if ts < until_ms] + [(until_ms, -1)]
    for mark, new_bytes in marks:
        ts = max(mark, at)
        while at < ts:
            start = period_start(at, period_ms)
            stop = min(ts, start + period_ms)
            prev = out.get(start, (0, stored))[0]
            out[start] = (prev + stored * (stop - at), stored)
            at = stop
        if new_bytes >= 0:
            stored = new_bytes
            start = period_start(at, period_ms)
            out[start] = (out.get(start, (0, stored))[0], stored)
    return out

