"""Orders, matching and subscriptions.

An order names a service, constraints (region, jurisdiction, level, price ceilings), a usage
profile and a policy. ``cheapest`` ranks the matching offers by the expected monthly cost of
the profile (storage, egress and requests all count) and takes the first that provisions;
``spread`` places ``copies`` subscriptions on as many distinct providers, cheapest first.
When provisioning fails on an offer, the next one is tried, and the order says so. The
prices of the offer at order time are fixed in the subscription: they are what bills.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select, update

from silverlining.market import probes, store
from silverlining.market.budgets import ensure_can_order
from silverlining.market.offers import (
    SERVICE_NAME,
    Offer,
    OfferFilter,
    PlanOffer,
    Prices,
    UsageProfile,
    currencies,
    monthly_cost,
    sort_offers,
)
from silverlining.market.osbclient import BrokerClient, BrokerError
from silverlining.market.registry import broker_for, get_provider
from silverlining.market.state import (
    Conflict,
    Forbidden,
    Invalid,
    MarketState,
    NoMatch,
    NotFound,
    Principal,
    Upstream,
    record,
)

POLICIES = ("cheapest", "spread")
MAX_COPIES = 10


@dataclass(frozen=True)
class OrderRequest:
    service: str = SERVICE_NAME
    filter: OfferFilter = field(default_factory=OfferFilter)
    profile: UsageProfile = field(default_factory=UsageProfile)
    policy: str = "cheapest"
    copies: int = 1
    #: Buy this offer only (the market's OSB catalog has a plan per offer).
    offer_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        f, p = self.filter, self.profile
        return {
            "service": self.service, "policy": self.policy, "copies": self.copies,
            "offer_id": self.offer_id,
            "filter": {k: None if v is None else str(v) for k, v in f.__dict__.items()},
            "profile": {"gb": str(p.gb), "egress_gb": str(p.egress_gb),
                        "requests": p.requests, "write_share": str(p.write_share)},
        }


@dataclass(frozen=True)
class Attempt:
    provider: str
    offer_id: str
    plan: str
    expected_monthly_cost: str
    outcome: str  # provisioned | failed | rolled-back
    error: str | None = None


@dataclass(frozen=True)
class Order:
    id: str
    status: str  # fulfilled | failed
    message: str
    attempts: tuple[Attempt, ...]
    subscriptions: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message,
                "attempts": [a.__dict__ for a in self.attempts],
                "subscriptions": list(self.subscriptions)}


class OrderFailed(NoMatch):
    def __init__(self, message: str, order: Order) -> None:
        super().__init__(message)
        self.order = order


# --- offers ----------------------------------------------------------------------------------

def listed_offers(state: MarketState) -> list[Offer]:
    """Every active plan of every listed provider."""
    o, p = store.offers, store.providers
    with state.store.begin() as conn:
        rows = conn.execute(
            select(o, p.c.name.label("provider_name"), p.c.level, p.c.certified_at,
                   p.c.health)
            .join(p, p.c.id == o.c.provider_id)
            .where(o.c.active == 1, p.c.status == "listed")).all()
    measured = probes.figures(state)
    return [_offer(r, measured.get(r.provider_id, {})) for r in rows]


def _offer(r: Any, measured: dict[str, Any]) -> Offer:
    return Offer(
        id=r.id, provider=r.provider_name, provider_id=r.provider_id, level=r.level,
        certified_at=r.certified_at, availability=measured.get("availability"),
        latency_p50_ms=measured.get("latency_p50_ms"),
        latency_p99_ms=measured.get("latency_p99_ms"), health=r.health,
        plan=PlanOffer(
            service_id="", plan_id=r.plan_id, plan_name=r.plan_name,
            description=r.description,
            prices=Prices(r.currency, Decimal(r.price_gb_month), Decimal(r.price_egress_gb),
                          Decimal(r.price_write_1k), Decimal(r.price_read_1k)),
            region=r.region, jurisdiction=r.jurisdiction, quota_bytes=r.quota_bytes,
            quota_objects=r.quota_objects))


def offer_view(offer: Offer, profile: UsageProfile | None = None) -> dict[str, Any]:
    p = offer.plan
    view: dict[str, Any] = {
        "id": offer.id, "provider": offer.provider, "plan": p.plan_name,
        "description": p.description, "region": p.region, "jurisdiction": p.jurisdiction,
        "level": offer.level, "certified_at": offer.certified_at,
        "prices": p.prices.to_dict(),
        "quota": {"bytes": p.quota_bytes, "objects": p.quota_objects},
        "availability": offer.availability, "latency_p50_ms": offer.latency_p50_ms,
        "latency_p99_ms": offer.latency_p99_ms, "health": offer.health,
    }
    if profile is not None:
        view["expected_monthly_cost"] = str(round_quote(monthly_cost(p.prices, profile)))
    return view


def round_quote(amount: Decimal) -> Decimal:
    """Quotes are shown to 4 decimal places (half-even); ranking uses the exact figure."""
    return amount.quantize(Decimal("0.0001"))


def match(state: MarketState, request: OrderRequest) -> list[Offer]:
    """The offers an order may land on, best first."""
    if request.service != SERVICE_NAME:
        raise Invalid(f"the market sells {SERVICE_NAME!r} only (for now), not "
                      f"{request.service[:64]!r}")
    if request.policy not in POLICIES:
        raise Invalid(f"policy must be one of {', '.join(POLICIES)}")
    if not 1 <= request.copies <= MAX_COPIES:
        raise Invalid(f"copies must be between 1 and {MAX_COPIES}")
    if request.policy == "cheapest" and request.copies != 1:
        raise Invalid("--copies needs --policy spread (cheapest places one subscription)")
    candidates = [o for o in listed_offers(state) if request.filter.admits(o)]
    if request.offer_id is not None:
        candidates = [o for o in candidates if o.id == request.offer_id]
    found = currencies(candidates)
    if len(found) > 1:
        raise Invalid(
            f"matching offers are priced in {', '.join(sorted(found))}: the market does not "
            "convert currencies, so choose one with currency (--currency)")
    return sort_offers(candidates, "estimate", request.profile)


# --- buying ----------------------------------------------------------------------------------

def buy(state: MarketState, actor: Principal, request: OrderRequest) -> Order:
    """Place an order: provision and bind on the best offers until it is fulfilled.

    All or nothing: if fewer than ``copies`` subscriptions can be made, the ones made are
    deprovisioned again and :class:`OrderFailed` says why, offer by offer.
    """
    ensure_can_order(state, actor)
    ranked = match(state, request)
    order_id = str(uuid.uuid4())
    if not ranked:
        order = _close(state, actor, order_id, request, "failed", (), (),
                       "no listed offer matches the order's constraints")
        raise OrderFailed(order.message, order)
    distinct = len({o.provider_id for o in ranked})
    if distinct < request.copies:
        order = _close(state, actor, order_id, request, "failed", (), (),
                       f"needed {request.copies} subscription(s) on distinct providers; "
                       f"only {distinct} provider(s) match the order's constraints")
        raise OrderFailed(order.message, order)
    attempts: list[Attempt] = []
    made: list[dict[str, Any]] = []
    providers: set[str] = set()
    for offer in ranked:
        if len(made) == request.copies:
            break
        if offer.provider_id in providers:
            continue  # spread: one copy per provider; cheapest: one provider anyway
        cost = str(round_quote(monthly_cost(offer.prices, request.profile)))
        try:
            sub = _subscribe(state, actor, offer, order_id)
        except (BrokerError, Upstream) as error:
            attempts.append(Attempt(offer.provider, offer.id, offer.plan.plan_name, cost,
                                    "failed", str(error)))
            continue
        attempts.append(Attempt(offer.provider, offer.id, offer.plan.plan_name, cost,
                                "provisioned"))
        made.append(sub)
        providers.add(offer.provider_id)
    if len(made) < request.copies:
        for sub in made:
            _deprovision(state, actor, sub["id"], reason="order could not be fulfilled")
        attempts = [Attempt(a.provider, a.offer_id, a.plan, a.expected_monthly_cost,
                            "rolled-back") if a.outcome == "provisioned" else a
                    for a in attempts]
        message = (f"needed {request.copies} subscription(s) on distinct providers; "
                   f"{distinct} provider(s) match but only {len(made)} could be provisioned")
        order = _close(state, actor, order_id, request, "failed", tuple(attempts), (), message)
        raise OrderFailed(message, order)
    skipped = [a for a in attempts if a.outcome == "failed"]
    message = "fulfilled" + (
        f" after {len(skipped)} failed attempt(s): "
        + "; ".join(f"{a.provider}: {a.error}" for a in skipped) if skipped else "")
    return _close(state, actor, order_id, request, "fulfilled", tuple(attempts), tuple(made),
                  message)


def _close(state: MarketState, actor: Principal, order_id: str, request: OrderRequest,
           status: str, attempts: tuple[Attempt, ...], subs: tuple[dict[str, Any], ...],
           message: str) -> Order:
    with state.store.begin() as conn:
        conn.execute(insert(store.orders).values(
            id=order_id, account_id=actor.account_id, created_at=store.now(),
            request_json=store.dumps(request.to_dict()), status=status,
            attempts_json=store.dumps([a.__dict__ for a in attempts]), message=message))
        record(conn, actor, "order." + status, order_id, message=message,
               subscriptions=[s["id"] for s in subs])
    return Order(order_id, status, message, attempts, subs)


def _subscribe(state: MarketState, actor: Principal, offer: Offer,
               order_id: str | None, *, ids: tuple[str, str, str] | None = None,
               flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """Provision and bind ``offer`` for ``actor``. ``ids`` (subscription, instance, binding)
    makes it idempotent: a rerun with the same ids finds what the first run made."""
    provider = get_provider(state, offer.provider)
    if provider.service_id is None:
        raise Upstream(f"{provider.name}: no catalog read yet")
    sub_id, instance, binding = ids or (str(uuid.uuid4()), str(uuid.uuid4()),
                                        str(uuid.uuid4()))
    with state.store.begin() as conn:
        if conn.execute(select(store.subscriptions.c.id).where(
                store.subscriptions.c.id == sub_id)).first() is not None:
            return _view(state, conn, sub_id, reveal=True)
    with broker_for(state, provider) as broker:
        broker.provision(instance, provider.service_id, offer.plan.plan_id,
                         space=actor.name)
        try:
            creds = broker.bind(instance, binding, provider.service_id, offer.plan.plan_id)
        except BrokerError:
            _quietly(broker.deprovision, instance, provider.service_id, offer.plan.plan_id)
            raise
    region = str(creds.get("region") or offer.plan.region)
    with state.store.begin() as conn:
        conn.execute(insert(store.subscriptions).values(
            id=sub_id, account_id=actor.account_id, order_id=order_id,
            provider_id=provider.id, offer_id=offer.id, plan_id=offer.plan.plan_id,
            plan_name=offer.plan.plan_name, service_id=provider.service_id,
            instance_id=instance, binding_id=binding, endpoint=creds["endpoint"],
            region=region, access_key_id=creds["access_key_id"],
            secret_access_key=state.vault.seal(creds["secret_access_key"],
                                               f"subscription/{sub_id}"),
            currency=offer.prices.currency,
            prices_json=store.dumps(offer.prices.to_dict()), status="active",
            flags_json=store.dumps(sorted(flags)), created_at=store.now()))
        record(conn, actor, "subscription.create", sub_id, provider=provider.name,
               plan=offer.plan.plan_name, prices=offer.prices.to_dict(), order=order_id)
        return _view(state, conn, sub_id, reveal=True)


def _quietly(fn: Any, *args: Any) -> None:
    with contextlib.suppress(BrokerError):
        fn(*args)


# --- subscriptions ----------------------------------------------------------------------------

def list_subscriptions(state: MarketState, actor: Principal,
                       everyone: bool = False) -> list[dict[str, Any]]:
    t = store.subscriptions
    query = select(t.c.id).order_by(t.c.created_at)
    if not (everyone and actor.is_admin):
        query = query.where(t.c.account_id == actor.account_id)
    with state.store.begin() as conn:
        return [_view(state, conn, r.id, reveal=False) for r in conn.execute(query).all()]


def get_subscription(state: MarketState, actor: Principal, sub_id: str,
                     reveal: bool = False) -> dict[str, Any]:
    with state.store.begin() as conn:
        _owned(conn, actor, sub_id)
        return _view(state, conn, sub_id, reveal=reveal)


def _owned(conn: Connection, actor: Principal, sub_id: str) -> Any:
    row = conn.execute(select(store.subscriptions).where(
        store.subscriptions.c.id == sub_id)).first()
    if row is None or (row.account_id != actor.account_id and not actor.is_admin):
        raise NotFound(f"no subscription {sub_id[:64]!r}")
    return row


def _view(state: MarketState, conn: Connection, sub_id: str, *,
          reveal: bool) -> dict[str, Any]:
    s, p, a = store.subscriptions, store.providers, store.accounts
    row = conn.execute(
        select(s, p.c.name.label("provider_name"), p.c.status.label("provider_status"),
               a.c.name.label("account_name"))
        .join(p, p.c.id == s.c.provider_id).join(a, a.c.id == s.c.account_id)
        .where(s.c.id == sub_id)).one()
    view: dict[str, Any] = {
        "id": row.id, "account": row.account_name, "provider": row.provider_name,
        "provider_status": row.provider_status, "plan": row.plan_name,
        "offer_id": row.offer_id, "order_id": row.order_id, "status": row.status,
        "flags": json.loads(row.flags_json), "endpoint": row.endpoint, "region": row.region,
        "access_key_id": row.access_key_id, "prices": json.loads(row.prices_json),
        "instance_id": row.instance_id, "created_at": row.created_at,
        "cancelled_at": row.cancelled_at,
    }
    if reveal and row.status == "active":
        view["secret_access_key"] = state.vault.open(row.secret_access_key,
                                                     f"subscription/{row.id}")
    return view


def cancel(state: MarketState, actor: Principal, sub_id: str) -> dict[str, Any]:
    """Unbind and deprovision: the provider deletes the tenant's data."""
    with state.store.begin() as conn:
        row = _owned(conn, actor, sub_id)
        if row.status != "active":
            raise Conflict(f"subscription {sub_id} is {row.status} already")
    _deprovision(state, actor, sub_id, reason="cancelled by " + actor.name)
    with state.store.begin() as conn:
        return _view(state, conn, sub_id, reveal=False)


def _deprovision(state: MarketState, actor: Principal, sub_id: str, *, reason: str) -> None:
    with state.store.begin() as conn:
        row = conn.execute(select(store.subscriptions).where(
            store.subscriptions.c.id == sub_id)).one()
        provider_row = conn.execute(select(store.providers.c.name).where(
            store.providers.c.id == row.provider_id)).one()
    provider = get_provider(state, provider_row.name)
    try:
        with broker_for(state, provider) as broker:
            _release(broker, row)
    except BrokerError as error:
        raise Upstream(f"{provider.name} could not deprovision subscription {sub_id}: "
                       f"{error}; it stays active, try again") from None
    with state.store.begin() as conn:
        conn.execute(update(store.subscriptions).where(
            store.subscriptions.c.id == sub_id).values(status="cancelled",
                                                       cancelled_at=store.now()))
        record(conn, actor, "subscription.cancel", sub_id, provider=provider.name,
               reason=reason)


def _release(broker: BrokerClient, row: Any) -> None:
    broker.unbind(row.instance_id, row.binding_id, row.service_id, row.plan_id)
    broker.deprovision(row.instance_id, row.service_id, row.plan_id)


def get_order(state: MarketState, actor: Principal, order_id: str) -> dict[str, Any]:
    t = store.orders
    with state.store.begin() as conn:
        row = conn.execute(select(t).where(t.c.id == order_id)).first()
        if row is None or (row.account_id != actor.account_id and not actor.is_admin):
            raise NotFound(f"no order {order_id[:64]!r}")
        subs = conn.execute(select(store.subscriptions.c.id).where(
            store.subscriptions.c.order_id == order_id)).all()
    return {"id": row.id, "status": row.status, "message": row.message,
            "created_at": row.created_at, "request": json.loads(row.request_json),
            "attempts": json.loads(row.attempts_json),
            "subscriptions": [s.id for s in subs]}


def require_buyer(actor: Principal) -> None:
    if actor.role not in ("admin", "buyer"):
        raise Forbidden("only buyers (and the admin) can place orders")
