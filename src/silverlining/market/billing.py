"""Usage collection, pricing and the double-entry ledger.

**Collection.** For every subscription the market fetches the provider's signed usage records
(``GET /federation/usage?instance_id=...``, one instance per batch, so a batch can be shown to
its buyer without revealing anyone else's usage), verifies the batch's Ed25519 signature
against the node key recorded at onboarding, and stores each *closed* record once. A
subscription's cursor only moves past periods that are stored, so a market or provider outage
is caught up by the next run, and running collection twice changes nothing. A batch whose
signature does not verify, or a record that differs from the one already stored for the same
closed period, is rejected and raised as a dispute.

**Pricing.** A record is priced with the prices fixed in the subscription at order time:

- storage: ``stored_byte_ms / (10^9 * 3,600,000 * 730)`` GB-months * the GB-month price;
- egress: ``bytes_out / 10^9`` GB * the egress price;
- writes and reads: ``requests / 1000`` * the price per 1,000.

**Rounding rule (the only one):** each (record, usage type) amount is computed exactly and
rounded half-even to a micro-unit (10^-6 of the currency); the ledger holds integer
micro-units. The market's fee on a line is the line * the fee percentage, rounded half-even
to a micro-unit; the provider gets the rest. Invoices sum lines exactly and state the amount
due rounded half-even to the currency's minor unit (cents).

**Ledger.** One transaction per priced record: the buyer is debited each line, the provider
credited the line less the fee, the market credited the fee; every transaction sums to zero.
:func:`verify_ledger` proves it, and re-prices every record from its stored signed form.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, func, insert, select, update

from silverlining.canonical import canonical_json
from silverlining.market import store
from silverlining.market.offers import Prices
from silverlining.market.registry import Provider, broker_password, get_provider
from silverlining.market.state import MarketState, Principal, parse_time, record

MICRO = Decimal("0.000001")
MICRO_PER_UNIT = 1_000_000
GB = Decimal(10**9)
BYTE_MS_PER_GB_MONTH = GB * 3_600_000 * 730
USAGE_TYPES = ("storage", "egress", "requests-write", "requests-read")
MARKET_FEES = "market:fees"
USAGE_FORMAT = "silverlining-usage/1"
#: How far back each collection re-reads closed periods it already stored, to catch rewrites.
RECHECK = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Line:
    usage_type: str
    quantity: Decimal  # consumed, in ``unit``
    unit: str
    pricing_quantity: Decimal
    pricing_unit: str
    unit_price: Decimal
    amount_micro: int


def to_micro(amount: Decimal) -> int:
    return int((amount / MICRO).quantize(Decimal(1), ROUND_HALF_EVEN))


def micro_text(micro: int) -> str:
    """Integer micro-units as an exact decimal string (``1234567`` -> ``1.234567``)."""
    return str((Decimal(micro) * MICRO).quantize(MICRO))


def due_text(micro: int) -> str:
    """The amount due: micro-units rounded half-even to the minor unit (cents)."""
    return str((Decimal(micro) * MICRO).quantize(Decimal("0.01"), ROUND_HALF_EVEN))


def price_record(rec: dict[str, Any], prices: Prices) -> list[Line]:
    """The lines of one usage record (as signed by the node) at ``prices``."""
    byte_ms = Decimal(int(rec["stored_byte_ms"]))
    egress = Decimal(int(rec["bytes_out"]))
    writes = Decimal(int(rec["requests_write"]))
    reads = Decimal(int(rec["requests_read"]))
    gb_months = byte_ms / BYTE_MS_PER_GB_MONTH
    out = [
        Line("storage", byte_ms / 3_600_000 / GB, "GB-Hours", gb_months, "GB-Month",
             prices.gb_month, to_micro(gb_months * prices.gb_month)),
        Line("egress", egress / GB, "GB", egress / GB, "GB", prices.egress_gb,
             to_micro(egress / GB * prices.egress_gb)),
        Line("requests-write", writes, "Requests", writes / 1000, "1000 Requests",
             prices.write_1k, to_micro(writes / 1000 * prices.write_1k)),
        Line("requests-read", reads, "Requests", reads / 1000, "1000 Requests",
             prices.read_1k, to_micro(reads / 1000 * prices.read_1k)),
    ]
    return [line for line in out if line.quantity != 0]


def fee_micro(amount_micro: int, fee_percent: Decimal) -> int:
    return int((Decimal(amount_micro) * fee_percent / 100).quantize(Decimal(1),
                                                                    ROUND_HALF_EVEN))


# --- collection -------------------------------------------------------------------------------

@dataclass
class CollectionReport:
    subscriptions: int = 0
    batches: int = 0
    records_new: int = 0
    records_known: int = 0
    disputes: int = 0
    errors: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "errors": self.errors or []}


def collect(state: MarketState, actor: Principal,
            subscription_id: str | None = None) -> CollectionReport:
    """Collect every subscription due (or one). Never raises for a provider's failure: it is
    listed in the report's errors and caught up on the next run."""
    report = CollectionReport(errors=[])
    s, c = store.subscriptions, store.usage_cursors
    with state.store.begin() as conn:
        query = select(s, c.c.collected_until, c.c.period_seconds).outerjoin(
            c, c.c.subscription_id == s.c.id)
        if subscription_id is not None:
            query = query.where(s.c.id == subscription_id)
        rows = conn.execute(query.order_by(s.c.created_at)).all()
    providers: dict[str, Provider] = {}
    for row in rows:
        if not _due(row):
            continue
        if row.provider_id not in providers:
            with state.store.begin() as conn:
                name = conn.execute(select(store.providers.c.name).where(
                    store.providers.c.id == row.provider_id)).scalar_one()
            providers[row.provider_id] = get_provider(state, name)
        provider = providers[row.provider_id]
        report.subscriptions += 1
        try:
            _collect_one(state, actor, provider, row, report)
        except (httpx.HTTPError, _Refused) as error:
            assert report.errors is not None
            report.errors.append(f"{provider.name}/{row.id}: {error}")
    return report


class _Refused(Exception):
    pass


def _due(row: Any) -> bool:
    if row.status == "active" or row.collected_until is None:
        return True
    # A cancelled subscription is collected until its last period is closed and stored.
    period = dt.timedelta(seconds=row.period_seconds or 3600)
    return bool(parse_time(row.collected_until) < parse_time(row.cancelled_at) + period)


def _collect_one(state: MarketState, actor: Principal, provider: Provider, sub: Any,
                 report: CollectionReport) -> None:
    # The last day of stored periods is fetched again: a provider that rewrites a closed
    # period it already reported is caught (a dispute), not silently believed or ignored.
    since = _floor_hour(sub.created_at)
    if sub.collected_until is not None:
        recheck = max(parse_time(sub.collected_until) - RECHECK, parse_time(since))
        since = recheck.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    password = broker_password(state, provider)
    while True:
        resp = httpx.get(provider.broker_url + "/federation/usage",
                         params={"instance_id": sub.instance_id, "since": since},
                         auth=(provider.broker_user, password),
                         timeout=state.settings.broker_timeout)
        if resp.status_code != 200:
            raise _Refused(f"usage answered {resp.status_code}: {resp.text[:200]}")
        document = resp.json()
        report.batches += 1
        problem = _check_batch(document, provider, sub.instance_id)
        if problem is not None:
            _dispute(state, actor, provider, sub.id, "bad-signature", problem, document)
            report.disputes += 1
            raise _Refused(f"batch rejected: {problem}")
        batch = document["batch"]
        batch_id = str(uuid.uuid4())
        closed = [r for r in batch["records"] if r.get("closed")]
        with state.store.begin() as conn:
            if closed:
                conn.execute(insert(store.usage_batches).values(
                    id=batch_id, subscription_id=sub.id, provider_id=provider.id,
                    fetched_at=store.now(), document=json.dumps(document)))
            disputed = []
            for rec in closed:
                outcome = _store_record(state, conn, actor, provider, sub, batch_id, rec)
                if outcome == "new":
                    report.records_new += 1
                elif outcome == "known":
                    report.records_known += 1
                else:
                    disputed.append(rec)
            next_since = batch.get("next_since")
            if next_since is None and batch.get("closed_until"):
                _advance(conn, sub.id, batch["closed_until"], batch.get("period_seconds"))
        for rec in disputed:
            _dispute(state, actor, provider, sub.id, "changed-record",
                     f"the record of the closed period {rec['period_start']} differs from "
                     "the one collected before; the first one stands", document)
            report.disputes += 1
        if next_since is None:
            return
        since = next_since


def _check_batch(document: Any, provider: Provider, instance_id: str) -> str | None:
    """Why a batch cannot be accepted, or None."""
    try:
        batch, sig = document["batch"], document["signature"]
        if batch.get("format") != USAGE_FORMAT:
            return f"unknown usage format {batch.get('format')!r}"
        if provider.node_public_key is None:
            return "no node key was recorded for this provider at onboarding"
        if sig.get("algorithm") != "ed25519" or sig.get("public_key") != provider.node_public_key:
            return "signed by another key than the node key recorded at onboarding"
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(provider.node_public_key))
        key.verify(base64.b64decode(sig["value"]), canonical_json(batch))
    except InvalidSignature:
        return "the Ed25519 signature does not verify"
    except (KeyError, TypeError, ValueError, binascii.Error, AttributeError) as bad:
        return f"malformed usage batch: {bad}"
    if batch.get("query", {}).get("instance_id") != instance_id or any(
            r.get("instance_id") != instance_id for r in batch.get("records", [])):
        return "the batch is about another service instance"
    return None


def _record_key(rec: dict[str, Any]) -> str:
    return store.dumps(rec)


def _store_record(state: MarketState, conn: Connection, actor: Principal, provider: Provider,
                  sub: Any, batch_id: str, rec: dict[str, Any]) -> str:
    t = store.usage_records
    existing = conn.execute(select(t.c.record_json).where(
        t.c.subscription_id == sub.id, t.c.period_start == rec["period_start"])).first()
    if existing is not None:
        return "known" if existing.record_json == _record_key(rec) else "changed"
    record_id = str(uuid.uuid4())
    conn.execute(insert(t).values(
        id=record_id, subscription_id=sub.id, provider_id=provider.id, batch_id=batch_id,
        period_start=rec["period_start"], period_end=rec["period_end"],
        record_json=_record_key(rec), collected_at=store.now()))
    _post(state, conn, sub, provider.id, record_id, rec)
    return "new"


def _post(state: MarketState, conn: Connection, sub: Any, provider_id: str, record_id: str,
          rec: dict[str, Any]) -> None:
    """One balanced ledger transaction for a priced record."""
    prices = Prices.from_dict(json.loads(sub.prices_json))
    fee_percent = Decimal(state.settings.fee_percent)
    txn = str(uuid.uuid4())
    conn.execute(insert(store.ledger_transactions).values(
        id=txn, usage_record_id=record_id, subscription_id=sub.id, account_id=sub.account_id,
        provider_id=provider_id, currency=prices.currency, charge_start=rec["period_start"],
        charge_end=rec["period_end"], created_at=store.now()))
    entries = []
    for line in price_record(rec, prices):
        fee = fee_micro(line.amount_micro, fee_percent)
        entries += [
            {"ledger_account": f"buyer:{sub.account_id}", "amount_micro": -line.amount_micro,
             "quantity": str(line.quantity)},
            {"ledger_account": f"provider:{provider_id}",
             "amount_micro": line.amount_micro - fee, "quantity": None},
            {"ledger_account": MARKET_FEES, "amount_micro": fee, "quantity": None},
        ]
        for e in entries[-3:]:
            e["usage_type"] = line.usage_type
    if entries:
        conn.execute(insert(store.ledger_entries),
                     [{"transaction_id": txn, **e} for e in entries])


def _advance(conn: Connection, sub_id: str, until: str, period_seconds: Any) -> None:
    t = store.usage_cursors
    values = {"collected_until": until,
              "period_seconds": period_seconds if isinstance(period_seconds, int) else None}
    done = conn.execute(update(t).where(t.c.subscription_id == sub_id).values(**values))
    if not done.rowcount:
        conn.execute(insert(t).values(subscription_id=sub_id, **values))


def _floor_hour(moment: str) -> str:
    # Records are per period (an hour by default); start a little before the subscription.
    when = parse_time(moment) - dt.timedelta(hours=1)
    return when.strftime("%Y-%m-%dT%H:00:00Z")


def _dispute(state: MarketState, actor: Principal, provider: Provider, sub_id: str | None,
             kind: str, detail: str, evidence: Any) -> None:
    with state.store.begin() as conn:
        dispute_id = str(uuid.uuid4())
        conn.execute(insert(store.disputes).values(
            id=dispute_id, provider_id=provider.id, subscription_id=sub_id, at=store.now(),
            kind=kind, detail=detail, evidence=json.dumps(evidence)[:1_000_000],
            status="open"))
        record(conn, actor, "billing.dispute", provider.name, dispute=dispute_id, kind=kind,
               subscription=sub_id, detail=detail)


def list_disputes(state: MarketState) -> list[dict[str, Any]]:
    d, p = store.disputes, store.providers
    with state.store.begin() as conn:
        rows = conn.execute(select(d, p.c.name.label("provider")).join(
            p, p.c.id == d.c.provider_id).order_by(d.c.at)).all()
    return [{"id": r.id, "provider": r.provider, "subscription_id": r.subscription_id,
             "at": r.at, "kind": r.kind, "detail": r.detail, "status": r.status}
            for r in rows]


# --- verification -------------------------------------------------------------------------------

def verify_ledger(state: MarketState) -> dict[str, Any]:
    """Prove the ledger: every transaction sums to zero; every stored record has exactly one
    transaction; every transaction's entries are what pricing its record gives today."""
    problems: list[str] = []
    t, e, r, s = (store.ledger_transactions, store.ledger_entries, store.usage_records,
                  store.subscriptions)
    fee_percent = Decimal(state.settings.fee_percent)
    with state.store.begin() as conn:
        sums = conn.execute(select(e.c.transaction_id, func.sum(e.c.amount_micro)).group_by(
            e.c.transaction_id)).all()
        unbalanced = [txn for txn, total in sums if int(total) != 0]
        problems += [f"transaction {txn} does not sum to zero" for txn in unbalanced]
        records = conn.execute(select(r.c.id, r.c.record_json, s.c.prices_json, s.c.account_id,
                                      r.c.provider_id)
                               .join(s, s.c.id == r.c.subscription_id)).all()
        txns = {row.usage_record_id: row.id for row in conn.execute(
            select(t.c.usage_record_id, t.c.id)).all()}
        entries: dict[str, list[Any]] = {}
        for row in conn.execute(select(e).order_by(e.c.seq)).all():
            entries.setdefault(row.transaction_id, []).append(row)
        total = conn.execute(select(func.coalesce(func.sum(e.c.amount_micro), 0))).scalar()
    for rec in records:
        txn = txns.get(rec.id)
        if txn is None:
            problems.append(f"usage record {rec.id} has no ledger transaction")
            continue
        want = []
        for line in price_record(json.loads(rec.record_json),
                                 Prices.from_dict(json.loads(rec.prices_json))):
            fee = fee_micro(line.amount_micro, fee_percent)
            want += [(f"buyer:{rec.account_id}", line.usage_type, -line.amount_micro),
                     (f"provider:{rec.provider_id}", line.usage_type, line.amount_micro - fee),
                     (MARKET_FEES, line.usage_type, fee)]
        got = [(x.ledger_account, x.usage_type, int(x.amount_micro))
               for x in entries.get(txn, [])]
        if sorted(got) != sorted(want):
            problems.append(f"transaction {txn} is not what its record prices to")
    if len(txns) != len(records):
        problems.append(f"{len(txns)} transactions for {len(records)} usage records")
    return {"ok": not problems, "transactions": len(txns), "entries": sum(
        len(v) for v in entries.values()), "total_micro": int(total or 0),
        "problems": problems[:100]}


# --- a buyer's view -----------------------------------------------------------------------------

def subscription_usage(state: MarketState, sub: dict[str, Any]) -> dict[str, Any]:
    """The raw signed batches and records of a subscription, beside the priced lines."""
    r, b = store.usage_records, store.usage_batches
    prices = Prices.from_dict(sub["prices"])
    with state.store.begin() as conn:
        recs = conn.execute(select(r).where(r.c.subscription_id == sub["id"]).order_by(
            r.c.period_start)).all()
        batch_ids = sorted({x.batch_id for x in recs})
        batches = {x.id: json.loads(x.document) for x in conn.execute(
            select(b).where(b.c.id.in_(batch_ids))).all()} if batch_ids else {}
        provider = conn.execute(select(store.providers.c.node_public_key).where(
            store.providers.c.name == sub["provider"])).scalar()
    fee = Decimal(state.settings.fee_percent)
    out = []
    for x in recs:
        raw = json.loads(x.record_json)
        lines = price_record(raw, prices)
        out.append({"period_start": x.period_start, "period_end": x.period_end,
                    "batch_id": x.batch_id, "record": raw,
                    "lines": [_line_view(line, fee) for line in lines],
                    "amount": micro_text(sum(line.amount_micro for line in lines))})
    return {"subscription_id": sub["id"], "provider": sub["provider"],
            "node_public_key": provider, "prices": sub["prices"], "records": out,
            "batches": batches,
            "total": micro_text(sum(to_micro(Decimal(x["amount"])) for x in out))}


def _line_view(line: Line, fee_percent: Decimal) -> dict[str, Any]:
    return {"usage_type": line.usage_type, "quantity": str(line.quantity), "unit": line.unit,
            "pricing_quantity": str(line.pricing_quantity), "pricing_unit": line.pricing_unit,
            "unit_price": str(line.unit_price), "amount": micro_text(line.amount_micro),
            "fee": micro_text(fee_micro(line.amount_micro, fee_percent))}


def verify_batch(document: dict[str, Any], public_key: str) -> bool:
    """A buyer's own check of a batch's signature against the node's public key."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(document["signature"]["value"]),
                   canonical_json(document["batch"]))
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
        return False
    return True
