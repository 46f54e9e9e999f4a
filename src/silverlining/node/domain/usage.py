"""Usage records: what a tenant used in each metering period, signed for the market.

A record covers one account (for the broker: one service instance) and one period
``[period_start, period_end)``. Closed periods come from ``usage_periods`` as folded; they
never change. The open periods (and ended ones not yet closed) are *provisional*: request
counters folded so far, and stored byte-time integrated up to now. Every quantity is an exact
integer, rendered as a decimal string so any JSON parser keeps it exact (byte-milliseconds of
a large tenant exceed 2^53).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from silverlining.node.identity import NodeIdentity
from silverlining.node.store.usage import (
    MeteringState,
    UsageRepository,
    UsageRow,
    integrate_open,
    period_start,
)

USAGE_FORMAT = "silverlining-usage/1"
MS_PER_HOUR = 3_600_000
#: byte-hours = byte-ms / 3,600,000 does not terminate in decimal in general (3,600,000 has
#: the factor 9), so it is rounded half-even to this many places; byte-ms is the exact figure.
BYTE_HOURS_PLACES = Decimal("1e-12")
DEFAULT_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class UsageRecord:
    account_id: int
    period_start_ms: int
    period_ms: int
    closed: bool
    requests_read: int
    requests_write: int
    bytes_in: int
    bytes_out: int
    stored_byte_ms: int
    stored_bytes_end: int

    @property
    def empty(self) -> bool:
        return not (self.requests_read or self.requests_write or self.bytes_in
                    or self.bytes_out or self.stored_byte_ms or self.stored_bytes_end)

    def to_json(self) -> dict[str, Any]:
        return {
            "period_start": iso_ms(self.period_start_ms),
            "period_end": iso_ms(self.period_start_ms + self.period_ms),
            "closed": self.closed,
            "requests_read": str(self.requests_read),
            "requests_write": str(self.requests_write),
            "bytes_in": str(self.bytes_in),
            "bytes_out": str(self.bytes_out),
            "stored_byte_ms": str(self.stored_byte_ms),
            "stored_byte_hours": byte_hours(self.stored_byte_ms),
            "stored_bytes_end": str(self.stored_bytes_end),
        }


@dataclass(frozen=True, slots=True)
class Page:
    records: list[tuple[str, UsageRecord]]  # (instance id, record)
    state: MeteringState | None
    #: Where the next page starts when this one was cut short, else None.
    next_since_ms: int | None


def byte_hours(byte_ms: int) -> str:
    value = (Decimal(byte_ms) / MS_PER_HOUR).quantize(BYTE_HOURS_PLACES, ROUND_HALF_EVEN)
    return format(value.normalize() if value == value.to_integral() else value, "f")


def iso_ms(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).replace(microsecond=ms % 1000 * 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class UsageService:
    def __init__(self, repo: UsageRepository, identity: NodeIdentity) -> None:
        self.repo = repo
        self.identity = identity

    def state(self) -> MeteringState | None:
        return self.repo.state()

    def instance_known(self, instance_id: str) -> bool:
        """True for a provisioned instance and for a deprovisioned one's tombstone."""
        return bool(self.repo.instance_accounts(instance_id))

    def account_records(self, account_id: int, since_ms: int, until_ms: int,
                        *, at_ms: int | None = None) -> list[UsageRecord]:
        """Every non-empty record of an account with a period starting in [since, until)."""
        state = self.repo.state()
        if state is None:
            return []
        since = period_start(since_ms, state.period_ms)
        rows = self.repo.account_rows(account_id, since, until_ms)
        return self._records(state, [(account_id, rows)], since, until_ms,
                             at_ms or now_ms())[account_id]

    def instance_page(self, instance_id: str | None, since_ms: int, until_ms: int,
                      *, limit: int = DEFAULT_LIMIT, at_ms: int | None = None) -> Page:
        """Records of one instance (or of every instance), ordered by (period, instance),
        at most about ``limit`` of them: a page always ends at a period boundary."""
        at = at_ms or now_ms()
        state = self.repo.state()
        if state is None:
            return Page([], None, None)
        p = state.period_ms
        since = period_start(since_ms, p)
        closed_until = state.folded_until_ms if state.folded_until_ms is not None else since
        instances = self.repo.instance_accounts(instance_id)
        by_account = {acct: iid for iid, acct in instances}
        # Closed periods straight from the table, paged in SQL.
        closed_end = min(until_ms, max(closed_until, since))
        rows, cut = self.repo.instance_rows(list(by_account), since, closed_end, limit)
        out: list[tuple[str, UsageRecord]] = []
        for r in rows:
            rec = _closed(r, p)
            if not rec.empty:
                out.append((by_account[r.account_id], rec))
        if cut is not None:
            return Page(out, state, cut)
        # Then the open periods, provisional, for every instance.
        open_since = max(since, closed_until)
        if open_since < until_ms:
            open_rows = self.repo.rows_by_account(list(by_account), open_since, until_ms)
            records = self._records(state, [(a, open_rows.get(a, [])) for a in by_account],
                                    open_since, until_ms, at)
            extra = [(by_account[a], rec) for a, recs in records.items() for rec in recs]
            extra.sort(key=lambda x: (x[1].period_start_ms, x[0]))
            out.extend(extra)
        return Page(out, state, None)

    def signed_batch(self, page: Page, *, instance_id: str | None, since_ms: int,
                     until_ms: int, service_id: str, endpoint: str,
                     at_ms: int | None = None) -> dict[str, Any]:
        """The usage document and its Ed25519 signature (over the canonical JSON of
        ``batch``; see identity.py)."""
        state = page.state
        batch: dict[str, Any] = {
            "format": USAGE_FORMAT,
            "node": {"public_key": self.identity.public_key,
                     "fingerprint": self.identity.fingerprint,
                     "service_id": service_id, "endpoint": endpoint},
            "generated_at": iso_ms(at_ms or now_ms()),
            "period_seconds": None if state is None else state.period_ms // 1000,
            "closed_until": (None if state is None or state.folded_until_ms is None
                             else iso_ms(state.folded_until_ms)),
            "query": {"instance_id": instance_id, "since": iso_ms(since_ms),
                      "until": iso_ms(until_ms)},
            "records": [{"instance_id": iid, **rec.to_json()} for iid, rec in page.records],
            "next_since": None if page.next_since_ms is None else iso_ms(page.next_since_ms),
        }
        return {"batch": batch,
                "signature": {"algorithm": "ed25519",
                              "public_key": self.identity.public_key,
                              "value": self.identity.sign(batch)}}

    # helpers -----------------------------------------------------------------------------
    def _records(self, state: MeteringState, accounts: list[tuple[int, list[UsageRow]]],
                 since: int, until: int, at: int) -> dict[int, list[UsageRecord]]:
        p = state.period_ms
        folded = state.folded_until_ms
        carry, events = self.repo.open_storage([a for a, _ in accounts])
        out: dict[int, list[UsageRecord]] = {}
        for acct, rows in accounts:
            recs: dict[int, UsageRecord] = {}
            for r in rows:
                if folded is not None and r.period_start_ms + p <= folded:
                    recs[r.period_start_ms] = _closed(r, p)
            open_from = folded if folded is not None else min(
                [ts for ts, _ in events.get(acct, [])] + [at])
            open_from = period_start(open_from, p) if folded is None else open_from
            provisional = integrate_open(carry.get(acct, 0), events.get(acct, []), open_from,
                                         at, p)
            counters = {r.period_start_ms: r for r in rows
                        if folded is None or r.period_start_ms + p > folded}
            for start in sorted(set(provisional) | set(counters)):
                if not since <= start < until:
                    continue
                byte_ms, end_bytes = provisional.get(start, (0, 0))
                row = counters.get(start)
                recs[start] = UsageRecord(
                    acct, start, p, False,
                    row.requests_read if row else 0, row.requests_write if row else 0,
                    row.bytes_in if row else 0, row.bytes_out if row else 0,
                    byte_ms, end_bytes)
            out[acct] = [recs[k] for k in sorted(recs) if not recs[k].empty]
        return out


def _closed(r: UsageRow, period_ms: int) -> UsageRecord:
    return UsageRecord(r.account_id, r.period_start_ms, period_ms, True, r.requests_read,
                       r.requests_write, r.bytes_in, r.bytes_out, r.stored_byte_ms or 0,
                       r.stored_bytes_end or 0)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_moment(text: str) -> int:
    """Milliseconds since the epoch from ISO 8601 (UTC if no offset is given) or from whole
    seconds since the epoch. Raises ValueError for anything else."""
    text = text.strip()
    if text.isdigit():
        return int(text) * 1000
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Exact integer arithmetic (no float timestamps).
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)
