"""Invoices for buyers, statements for providers, and the FOCUS CSV export.

An invoice covers one buyer, one currency and a period ``[start, end)`` of charge periods
(usage hours): monthly ones are made by the schedule once a month has ended, on-demand ones
for any period. Its lines are the buyer's ledger entries summed per subscription and usage
type; its total is their exact sum, and the amount due that total rounded half-even to the
minor unit (see billing.py for the one rounding rule).

The CSV uses the column names of the FinOps FOCUS specification (1.0), one row per line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, select

from silverlining.market import store
from silverlining.market.billing import MICRO, due_text, micro_text
from silverlining.market.registry import get_provider, may_manage
from silverlining.market.state import Invalid, MarketState, NotFound, Principal, record

_MONTH = re.compile(r"^\d{4}-\d{2}$")
UNITS = {"storage": ("GB-Hours", "GB-Month", Decimal(730)),
         "egress": ("GB", "GB", Decimal(1)),
         "requests-write": ("Requests", "1000 Requests", Decimal(1000)),
         "requests-read": ("Requests", "1000 Requests", Decimal(1000))}
DESCRIPTIONS = {"storage": "Object storage, GB-months stored",
                "egress": "Data transfer out, GB",
                "requests-write": "Write requests (PUT, COPY, POST, LIST, ...)",
                "requests-read": "Read requests (GET, HEAD, ...)"}
FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName",
    "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory",
    "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd",
    "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId",
    "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice",
    "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId",
    "SubAccountName", "Tags",
)


def moment(text: str) -> str:
    """A period bound as stored charge periods are written (``...T00:00:00.000Z``)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        when = when.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"{text[:40]!r} is not an ISO 8601 date or time (UTC)") from None
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def month_bounds(month: str) -> tuple[str, str]:
    if not _MONTH.match(month):
        raise Invalid(f"a month is YYYY-MM, not {month[:20]!r}")
    year, mon = int(month[:4]), int(month[5:])
    if not 1 <= mon <= 12:
        raise Invalid(f"a month is YYYY-MM, not {month!r}")
    start = dt.datetime(year, mon, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=dt.UTC)
    return moment(start.isoformat()), moment(end.isoformat())


def _lines(conn: Any, ledger_account: str, start: str, end: str,
           *, account_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Entries of ``ledger_account`` in [start, end), summed per subscription and usage type,
    grouped by currency."""
    t, e, s, p = (store.ledger_transactions, store.ledger_entries, store.subscriptions,
                  store.providers)
    where = [e.c.ledger_account == ledger_account, t.c.charge_start >= start,
             t.c.charge_start < end]
    if account_id is not None:
        where.append(t.c.account_id == account_id)
    rows = conn.execute(
        select(t.c.subscription_id, t.c.currency, e.c.usage_type,
               func.sum(e.c.amount_micro).label("micro"), func.count().label("hours"),
               s.c.plan_name, s.c.region, s.c.prices_json, s.c.account_id,
               p.c.name.label("provider"))
        .join(e, e.c.transaction_id == t.c.id).join(s, s.c.id == t.c.subscription_id)
        .join(p, p.c.id == t.c.provider_id).where(and_(*where))
        .group_by(t.c.subscription_id, t.c.currency, e.c.usage_type, s.c.plan_name,
                  s.c.region, s.c.prices_json, s.c.account_id, p.c.name)
        .order_by(t.c.subscription_id, e.c.usage_type)).all()
    quantities = _quantities(conn, start, end, account_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        consumed = quantities.get((r.subscription_id, r.usage_type), Decimal(0))
        unit, pricing_unit, per = UNITS[r.usage_type]
        prices = json.loads(r.prices_json)
        price_key = {"storage": "gb_month", "egress": "egress_gb", "requests-write": "write_1k",
                     "requests-read": "read_1k"}[r.usage_type]
        micro = int(r.micro)
        out.setdefault(r.currency, []).append({
            "subscription_id": r.subscription_id, "provider": r.provider,
            "plan": r.plan_name, "region": r.region, "usage_type": r.usage_type,
            "description": DESCRIPTIONS[r.usage_type], "charge_periods": int(r.hours),
            "consumed_quantity": str(consumed), "consumed_unit": unit,
            "pricing_quantity": str(consumed / per), "pricing_unit": pricing_unit,
            "unit_price": prices[price_key], "amount_micro": abs(micro),
            "amount": micro_text(abs(micro)), "account_id": r.account_id,
        })
    return out


def _quantities(conn: Any, start: str, end: str,
                account_id: str | None) -> dict[tuple[str, str], Decimal]:
    t, e = store.ledger_transactions, store.ledger_entries
    where = [e.c.quantity.is_not(None), t.c.charge_start >= start, t.c.charge_start < end]
    if account_id is not None:
        where.append(t.c.account_id == account_id)
    out: dict[tuple[str, str], Decimal] = {}
    for r in conn.execute(select(t.c.subscription_id, e.c.usage_type, e.c.quantity).join(
            e, e.c.transaction_id == t.c.id).where(and_(*where))).all():
        key = (r.subscription_id, r.usage_type)
        out[key] = out.get(key, Decimal(0)) + Decimal(r.quantity)
    return out


def create_invoices(state: MarketState, actor: Principal, account_id: str, start: str,
                    end: str, kind: str = "on-demand") -> list[dict[str, Any]]:
    """The buyer's invoice(s) for [start, end): one per currency it was charged in."""
    start, end = moment(start), moment(end)
    if start >= end:
        raise Invalid("the period's start must be before its end")
    made = []
    with state.store.begin() as conn:
        for currency, lines in _lines(conn, f"buyer:{account_id}", start, end,
                                      account_id=account_id).items():
            invoice_id = str(uuid.uuid4())
            total = sum(line["amount_micro"] for line in lines)
            conn.execute(insert(store.invoices).values(
                id=invoice_id, account_id=account_id, period_start=start, period_end=end,
                currency=currency, kind=kind, total_micro=total,
                lines_json=store.dumps(lines), created_at=store.now()))
            record(conn, actor, "invoice.create", invoice_id, account=account_id,
                   currency=currency, total=micro_text(total), kind=kind)
            made.append(invoice_id)
    return [get_invoice(state, actor, i, check_owner=False) for i in made]


def monthly_invoices(state: MarketState, actor: Principal, month: str) -> int:
    """Invoices for every buyer charged in ``month`` (YYYY-MM) that has none yet."""
    start, end = month_bounds(month)
    t, i = store.ledger_transactions, store.invoices
    with state.store.begin() as conn:
        charged = {r.account_id for r in conn.execute(select(t.c.account_id).where(
            t.c.charge_start >= start, t.c.charge_start < end).distinct()).all()}
        done = {r.account_id for r in conn.execute(select(i.c.account_id).where(
            i.c.kind == "monthly", i.c.period_start == start)).all()}
    count = 0
    for account_id in sorted(charged - done):
        count += len(create_invoices(state, actor, account_id, start, end, "monthly"))
    return count


def list_invoices(state: MarketState, actor: Principal) -> list[dict[str, Any]]:
    i, a = store.invoices, store.accounts
    query = select(i.c.id, i.c.period_start, i.c.period_end, i.c.currency, i.c.kind,
                   i.c.total_micro, i.c.created_at, a.c.name.label("account")).join(
        a, a.c.id == i.c.account_id).order_by(i.c.created_at)
    if not actor.is_admin:
        query = query.where(i.c.account_id == actor.account_id)
    with state.store.begin() as conn:
        rows = conn.execute(query).all()
    return [{"id": r.id, "account": r.account, "period_start": r.period_start,
             "period_end": r.period_end, "currency": r.currency, "kind": r.kind,
             "total": micro_text(int(r.total_micro)), "amount_due": due_text(int(r.total_micro)),
             "created_at": r.created_at} for r in rows]


def get_invoice(state: MarketState, actor: Principal, invoice_id: str, *,
                check_owner: bool = True) -> dict[str, Any]:
    i, a = store.invoices, store.accounts
    with state.store.begin() as conn:
        r = conn.execute(select(i, a.c.name.label("account")).join(
            a, a.c.id == i.c.account_id).where(i.c.id == invoice_id)).first()
    if r is None or (check_owner and r.account_id != actor.account_id and not actor.is_admin):
        raise NotFound(f"no invoice {invoice_id[:64]!r}")
    total = int(r.total_micro)
    return {"id": r.id, "account": r.account, "account_id": r.account_id,
            "period_start": r.period_start, "period_end": r.period_end,
            "currency": r.currency, "kind": r.kind, "total": micro_text(total),
            "amount_due": due_text(total), "created_at": r.created_at,
            "lines": json.loads(r.lines_json)}


def invoice_csv(invoice: dict[str, Any]) -> str:
    """The invoice as FOCUS rows (one per line)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in invoice["lines"]:
        cost = line["amount"]
        writer.writerow({
            "AvailabilityZone": "", "BilledCost": cost, "BillingAccountId": invoice["account_id"],
            "BillingAccountName": invoice["account"], "BillingCurrency": invoice["currency"],
            "BillingPeriodEnd": invoice["period_end"],
            "BillingPeriodStart": invoice["period_start"], "ChargeCategory": "Usage",
            "ChargeClass": "", "ChargeDescription": line["description"],
            "ChargeFrequency": "Usage-Based", "ChargePeriodEnd": invoice["period_end"],
            "ChargePeriodStart": invoice["period_start"], "CommitmentDiscountCategory": "",
            "CommitmentDiscountId": "", "CommitmentDiscountName": "",
            "CommitmentDiscountStatus": "", "CommitmentDiscountType": "",
            "ConsumedQuantity": line["consumed_quantity"], "ConsumedUnit": line["consumed_unit"],
            "ContractedCost": cost, "ContractedUnitPrice": line["unit_price"],
            "EffectiveCost": cost, "InvoiceId": invoice["id"],
            "InvoiceIssuerName": "Silver Lining market", "ListCost": cost,
            "ListUnitPrice": line["unit_price"], "PricingCategory": "Standard",
            "PricingQuantity": line["pricing_quantity"], "PricingUnit": line["pricing_unit"],
            "ProviderName": line["provider"], "PublisherName": line["provider"],
            "RegionId": line["region"], "RegionName": line["region"],
            "ResourceId": line["subscription_id"],
            "ResourceName": f"{line['provider']}/{line['plan']}",
            "ResourceType": "Object storage subscription", "ServiceCategory": "Storage",
            "ServiceName": "Object Storage", "SkuId": f"{line['provider']}/{line['plan']}",
            "SkuPriceId": f"{line['provider']}/{line['plan']}/{line['usage_type']}",
            "SubAccountId": line["subscription_id"],
            "SubAccountName": f"{line['provider']} {line['plan']}", "Tags": "{}",
        })
    return out.getvalue()


def provider_statement(state: MarketState, actor: Principal, name: str, start: str,
                       end: str) -> dict[str, Any]:
    """What the market owes a provider for [start, end): its ledger credits, itemised."""
    provider = get_provider(state, name)
    may_manage(actor, provider)
    start, end = moment(start), moment(end)
    with state.store.begin() as conn:
        by_currency = _lines(conn, f"provider:{provider.id}", start, end)
        fees = _lines(conn, "market:fees", start, end)
    sub_ids = {line["subscription_id"] for lines in by_currency.values() for line in lines}
    fee_total = {c: sum(x["amount_micro"] for x in lines if x["subscription_id"] in sub_ids)
                 for c, lines in fees.items()}
    return {"provider": name, "period_start": start, "period_end": end,
            "currencies": {c: {"lines": [{k: v for k, v in x.items() if k != "account_id"}
                                         for x in lines],
                               "owed": micro_text(sum(x["amount_micro"] for x in lines)),
                               "market_fee": micro_text(fee_total.get(c, 0))}
                           for c, lines in by_currency.items()}}


def amount(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite() or value < 0:
        raise Invalid("an amount is a decimal, not negative")
    return value.quantize(MICRO)
