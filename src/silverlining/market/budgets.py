"""Monthly budgets: a buyer's cap on what it is charged per calendar month (UTC), with alert
thresholds. Crossing a threshold records an alert (once per month and threshold); at 100% new
orders are refused. Existing subscriptions and their data are never touched for budget
reasons."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from silverlining.market import store
from silverlining.market.billing import micro_text, to_micro
from silverlining.market.invoices import month_bounds
from silverlining.market.state import Invalid, MarketError, MarketState, Principal, record

DEFAULT_THRESHOLDS = (50, 80, 100)


class BudgetReached(MarketError):
    """402 Payment Required: the month's budget is spent; no new orders until it is raised."""

    status = 402


def this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def set_budget(state: MarketState, actor: Principal, amount: Decimal, currency: str,
               thresholds: list[int] | None = None) -> dict[str, Any]:
    if not amount.is_finite() or amount <= 0:
        raise Invalid("a budget is a positive amount")
    marks = sorted(set(thresholds or DEFAULT_THRESHOLDS))
    if not marks or any(not 1 <= m <= 100 for m in marks):
        raise Invalid("alert thresholds are percentages from 1 to 100")
    if 100 not in marks:
        marks.append(100)  # reaching the budget is always an alert: it blocks orders
    values = {"amount_micro": to_micro(amount), "currency": currency.upper(),
              "thresholds_json": json.dumps(marks), "updated_at": store.now()}
    t = store.budgets
    with state.store.begin() as conn:
        done = conn.execute(update(t).where(t.c.account_id == actor.account_id).values(
            **values)).rowcount
        if not done:
            conn.execute(insert(t).values(account_id=actor.account_id, **values))
        record(conn, actor, "budget.set", actor.name, amount=str(amount),
               currency=currency.upper(), thresholds=marks)
    check_alerts(state, [actor.account_id])
    return budget_status(state, actor)


def clear_budget(state: MarketState, actor: Principal) -> None:
    with state.store.begin() as conn:
        conn.execute(delete(store.budgets).where(store.budgets.c.account_id == actor.account_id))
        record(conn, actor, "budget.clear", actor.name)


def month_spend(conn: Any, account_id: str, month: str) -> int:
    """Micro-units charged to the buyer for charge periods in ``month``."""
    start, end = month_bounds(month)
    t, e = store.ledger_transactions, store.ledger_entries
    total = conn.execute(select(func.coalesce(func.sum(e.c.amount_micro), 0)).join(
        t, t.c.id == e.c.transaction_id).where(
        e.c.ledger_account == f"buyer:{account_id}", t.c.charge_start >= start,
        t.c.charge_start < end)).scalar()
    return -int(total or 0)


def check_alerts(state: MarketState, account_ids: list[str] | None = None) -> int:
    """Record alerts for thresholds crossed this month; returns how many are new."""
    month = this_month()
    b = store.budgets
    new = 0
    with state.store.begin() as conn:
        query = select(b)
        if account_ids is not None:
            query = query.where(b.c.account_id.in_(account_ids))
        for row in conn.execute(query).all():
            spend = month_spend(conn, row.account_id, month)
            seen = {r.threshold for r in conn.execute(select(
                store.budget_alerts.c.threshold).where(
                store.budget_alerts.c.account_id == row.account_id,
                store.budget_alerts.c.month == month)).all()}
            for mark in json.loads(row.thresholds_json):
                if mark in seen or spend * 100 < int(row.amount_micro) * mark:
                    continue
                conn.execute(insert(store.budget_alerts).values(
                    id=str(uuid.uuid4()), account_id=row.account_id, month=month,
                    threshold=mark, spend_micro=spend, budget_micro=row.amount_micro,
                    at=store.now()))
                name = conn.execute(select(store.accounts.c.name).where(
                    store.accounts.c.id == row.account_id)).scalar_one()
                record(conn, Principal("", "market", "admin"), "budget.alert", name,
                       month=month, threshold=mark, spend=micro_text(spend),
                       budget=micro_text(int(row.amount_micro)))
                new += 1
    return new


def budget_status(state: MarketState, actor: Principal) -> dict[str, Any]:
    month = this_month()
    with state.store.begin() as conn:
        row = conn.execute(select(store.budgets).where(
            store.budgets.c.account_id == actor.account_id)).first()
        spend = month_spend(conn, actor.account_id, month)
        alerts = conn.execute(select(store.budget_alerts).where(
            store.budget_alerts.c.account_id == actor.account_id).order_by(
            store.budget_alerts.c.at)).all()
    out: dict[str, Any] = {
        "month": month, "spend": micro_text(spend), "budget": None, "currency": None,
        "thresholds": [], "percent_used": None, "blocked": False,
        "alerts": [{"month": a.month, "threshold": a.threshold, "at": a.at,
                    "spend": micro_text(int(a.spend_micro)),
                    "budget": micro_text(int(a.budget_micro))} for a in alerts],
    }
    if row is not None:
        budget = int(row.amount_micro)
        out.update(budget=micro_text(budget), currency=row.currency,
                   thresholds=json.loads(row.thresholds_json),
                   percent_used=str((Decimal(spend) * 100 / budget).quantize(Decimal("0.01"))),
                   blocked=spend >= budget)
    return out


def ensure_can_order(state: MarketState, actor: Principal) -> None:
    status = budget_status(state, actor)
    if status["blocked"]:
        raise BudgetReached(
            f"the monthly budget of {status['budget']} {status['currency']} is reached "
            f"({status['spend']} charged in {status['month']}): no new orders until it is "
            "raised (market budget set AMOUNT). Existing subscriptions keep working.")
