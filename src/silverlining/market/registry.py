"""Providers: onboarding, certification by Core, price refreshes, delisting.

Certification (:func:`certify`) acts as a platform would: it reads the provider's catalog,
provisions a throw-away tenant, binds it twice (the second binding is Core's alternate
account for the tenant-isolation checks), runs Core through those credentials, signs the
report with the market's key, and always unbinds and deprovisions afterwards. A provider is
listed while its latest certification reaches the market's listing level; one that stops
reaching it is delisted, and its buyers' subscriptions keep working but are flagged.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, insert, select, update

from silverlining.core.context import Target, TargetError
from silverlining.core.rawhttp import Credentials
from silverlining.core.registry import Level
from silverlining.core.report import Status
from silverlining.core.runner import execute, plan
from silverlining.core.signing import sign_document
from silverlining.market import store
from silverlining.market.accounts import check_name
from silverlining.market.offers import (
    CatalogError,
    PlanOffer,
    ServiceInfo,
    level_rank,
    offer_id,
    parse_catalog,
)
from silverlining.market.osbclient import BrokerClient, BrokerError
from silverlining.market.state import (
    Conflict,
    Forbidden,
    Invalid,
    MarketState,
    NotFound,
    Principal,
    record,
)

DELISTED_FLAG = "provider-delisted"


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    status: str
    status_reason: str | None
    level: str | None
    certified_at: str | None
    broker_url: str
    broker_user: str
    service_id: str | None
    endpoint: str | None
    region: str | None
    jurisdiction: str | None
    node_public_key: str | None
    catalog_at: str | None
    catalog_error: str | None
    last_certification_id: str | None
    owner_account_id: str | None
    created_at: str
    health: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "owner_account_id"}


@dataclass(frozen=True)
class Certification:
    id: str
    provider: str
    started_at: str
    finished_at: str
    level: str
    certified: str | None
    passed: bool
    failed: list[dict[str, Any]]
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _provider(row: Any) -> Provider:
    return Provider(
        row.id, row.name, row.status, row.status_reason, row.level, row.certified_at,
        row.broker_url, row.broker_user, row.service_id, row.endpoint, row.region, row.jurisdiction,
        row.node_public_key, row.catalog_at, row.catalog_error, row.last_certification_id,
        row.owner_account_id, row.created_at, row.health)


def check_broker_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"the broker URL must be an http:// or https:// URL, not {url[:200]!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise Invalid("the broker URL must not carry a query, fragment or credentials")
    return url.rstrip("/")


# --- reading ---------------------------------------------------------------------------------

def list_providers(state: MarketState) -> list[Provider]:
    with state.store.begin() as conn:
        rows = conn.execute(select(store.providers).order_by(store.providers.c.name)).all()
    return [_provider(r) for r in rows]


def get_provider(state: MarketState, name: str) -> Provider:
    with state.store.begin() as conn:
        return _get(conn, name)


def _get(conn: Connection, name: str) -> Provider:
    row = conn.execute(select(store.providers).where(store.providers.c.name == name)).first()
    if row is None:
        raise NotFound(f"no provider named {name!r}")
    return _provider(row)


def certifications(state: MarketState, name: str, limit: int = 50) -> list[Certification]:
    with state.store.begin() as conn:
        provider = _get(conn, name)
        rows = conn.execute(
            select(store.certifications)
            .where(store.certifications.c.provider_id == provider.id)
            .order_by(store.certifications.c.started_at.desc()).limit(limit)).all()
    return [Certification(r.id, name, r.started_at, r.finished_at, r.level, r.certified,
                          bool(r.passed), json.loads(r.failed_json), r.error) for r in rows]


def certification_report(state: MarketState, certification_id: str) -> dict[str, Any]:
    with state.store.begin() as conn:
        row = conn.execute(select(store.certifications.c.report_json).where(
            store.certifications.c.id == certification_id)).first()
    if row is None:
        raise NotFound(f"no certification {certification_id!r}")
    if row.report_json is None:
        raise NotFound(f"certification {certification_id!r} has no report: Core could not run")
    report: dict[str, Any] = json.loads(row.report_json)
    return report


# --- onboarding --------------------------------------------------------------------------------

def add_provider(state: MarketState, actor: Principal, name: str, broker_url: str,
                 broker_user: str, broker_password: str) -> tuple[Provider, Certification]:
    """Register a provider and certify it now. It is listed only if it passes."""
    if actor.role not in ("admin", "provider"):
        raise Forbidden("only the market's admin or a provider operator can onboard providers")
    check_name(name, "provider")
    url = check_broker_url(broker_url)
    if not broker_user or not broker_password:
        raise Invalid("the broker user and password must not be empty")
    provider_id = str(uuid.uuid4())
    with state.store.begin() as conn:
        if conn.execute(select(store.providers.c.id).where(
                store.providers.c.name == name)).first() is not None:
            raise Conflict(f"a provider named {name!r} exists already")
        conn.execute(insert(store.providers).values(
            id=provider_id, name=name,
            owner_account_id=None if actor.is_admin else actor.account_id,
            broker_url=url, broker_user=broker_user,
            broker_password=state.vault.seal(broker_password, f"provider/{provider_id}"),
            status="pending", created_at=store.now()))
        record(conn, actor, "provider.add", name, broker_url=url)
    certification = certify(state, actor, name)
    return get_provider(state, name), certification


def broker_password(state: MarketState, provider: Provider) -> str:
    with state.store.begin() as conn:
        sealed = conn.execute(select(store.providers.c.broker_password).where(
            store.providers.c.id == provider.id)).scalar_one()
    return state.vault.open(sealed, f"provider/{provider.id}")


def broker_for(state: MarketState, provider: Provider) -> BrokerClient:
    return BrokerClient(provider.broker_url, provider.broker_user,
                        broker_password(state, provider), timeout=state.settings.broker_timeout)


def may_manage(actor: Principal, provider: Provider) -> None:
    if not actor.is_admin and provider.owner_account_id != actor.account_id:
        raise Forbidden(f"only the market's admin or the operator of {provider.name!r} can "
                        "do that")


def delist(state: MarketState, actor: Principal, name: str, reason: str) -> Provider:
    """Take a provider off the market by hand (admin). Subscriptions keep working, flagged."""
    if not actor.is_admin:
        raise Forbidden("only the market's admin can delist a provider")
    with state.store.begin() as conn:
        provider = _get(conn, name)
        _set_listing(conn, provider, "delisted", provider.level, reason)
        record(conn, actor, "provider.delist", name, reason=reason)
        return _get(conn, name)


# --- catalog and prices -----------------------------------------------------------------------

def refresh_catalog(state: MarketState, actor: Principal, name: str) -> ServiceInfo:
    """Read the provider's catalog now and update its offers (prices, quotas, regions)."""
    provider = get_provider(state, name)
    try:
        with broker_for(state, provider) as broker:
            raw = broker.catalog()
            info = parse_catalog(raw)
    except (BrokerError, CatalogError) as error:
        with state.store.begin() as conn:
            conn.execute(update(store.providers).where(
                store.providers.c.id == provider.id).values(catalog_error=str(error)))
            record(conn, actor, "provider.catalog-failed", name, error=str(error))
        raise
    with state.store.begin() as conn:
        _store_catalog(conn, provider, info, raw, actor)
    return info


def _store_catalog(conn: Connection, provider: Provider, info: ServiceInfo,
                   raw: dict[str, Any], actor: Principal) -> None:
    at = store.now()
    t = store.offers
    seen: set[str] = set()
    changes: list[str] = []
    for plan_offer in info.plans:
        oid = offer_id(provider.id, plan_offer.plan_id)
        seen.add(oid)
        values = _offer_values(plan_offer)
        old = conn.execute(select(t).where(t.c.id == oid)).first()
        prices = plan_offer.prices.to_dict()
        if old is None:
            conn.execute(insert(t).values(id=oid, provider_id=provider.id, active=1,
                                          updated_at=at, **values))
        else:
            conn.execute(update(t).where(t.c.id == oid).values(active=1, updated_at=at,
                                                                 **values))
        old_prices = None if old is None else {
            "currency": old.currency, "gb_month": old.price_gb_month,
            "egress_gb": old.price_egress_gb, "write_1k": old.price_write_1k,
            "read_1k": old.price_read_1k}
        if old_prices != prices or (old is not None and not old.active):
            conn.execute(insert(store.price_history).values(
                offer_id=oid, at=at, prices_json=store.dumps(prices)))
            changes.append(plan_offer.plan_name)
    gone = conn.execute(update(t).where(
        t.c.provider_id == provider.id, t.c.active == 1, t.c.id.not_in(seen)).values(
            active=0, updated_at=at)).rowcount
    conn.execute(update(store.providers).where(store.providers.c.id == provider.id).values(
        service_id=info.service_id, endpoint=info.endpoint, region=info.region,
        jurisdiction=info.jurisdiction, catalog_json=store.dumps(raw), catalog_at=at,
        catalog_error=None))
    if changes or gone:
        record(conn, actor, "provider.prices", provider.name, changed=changes, withdrawn=gone)


def _offer_values(p: PlanOffer) -> dict[str, Any]:
    return {
        "plan_id": p.plan_id, "plan_name": p.plan_name, "description": p.description,
        "currency": p.prices.currency, "price_gb_month": str(p.prices.gb_month),
        "price_egress_gb": str(p.prices.egress_gb), "price_write_1k": str(p.prices.write_1k),
        "price_read_1k": str(p.prices.read_1k), "region": p.region,
        "jurisdiction": p.jurisdiction, "quota_bytes": p.quota_bytes,
        "quota_objects": p.quota_objects,
    }


# --- certification ----------------------------------------------------------------------------

def certify(state: MarketState, actor: Principal, name: str) -> Certification:
    """Run Core against the provider through a throw-away tenant; list or delist it on the
    outcome. Never raises for the provider's own failures: they become the certification's
    error and count as not passing."""
    provider = get_provider(state, name)
    started = store.now()
    report: dict[str, Any] | None = None
    failed: list[dict[str, Any]] = []
    error: str | None = None
    certified: str | None = None
    try:
        info = refresh_catalog(state, actor, name)
        node_key = _node_identity(provider.broker_url, state.settings.broker_timeout)
        if node_key is not None:
            with state.store.begin() as conn:
                conn.execute(update(store.providers).where(
                    store.providers.c.id == provider.id).values(node_public_key=node_key))
        report = _run_core(state, provider, info)
        verdict = report["verdict"]
        certified = verdict.get("certified")
        failed = [{"id": c["id"], "statement": c["statement"], "status": c["status"],
                   "reason": c.get("reason")}
                  for c in report["checks"]
                  if c["status"] in (Status.FAILED, Status.ERROR, Status.SKIPPED)]
    except (BrokerError, CatalogError, TargetError) as failure:
        error = str(failure)
    passed = error is None and level_rank(certified) >= level_rank(state.settings.listing_level)
    cert = Certification(str(uuid.uuid4()), name, started, store.now(),
                         state.settings.core_level, certified, passed, failed, error)
    with state.store.begin() as conn:
        conn.execute(insert(store.certifications).values(
            id=cert.id, provider_id=provider.id, started_at=cert.started_at,
            finished_at=cert.finished_at, level=cert.level, certified=certified,
            passed=int(passed), failed_json=store.dumps(failed),
            report_json=None if report is None else json.dumps(report),
            error=error))
        current = _get(conn, name)
        if passed:
            _set_listing(conn, current, "listed", certified, None, certified_at=cert.finished_at)
        else:
            reason = error or _reason(failed, certified, state.settings.listing_level)
            status = "delisted" if current.status in ("listed", "delisted") else "refused"
            _set_listing(conn, current, status, certified, reason)
        conn.execute(update(store.providers).where(store.providers.c.id == provider.id).values(
            last_certification_id=cert.id))
        record(conn, actor, "provider.certify", name, certification=cert.id, passed=passed,
               certified=certified, failed=[f["id"] for f in failed], error=error)
    return cert


def _reason(failed: list[dict[str, Any]], certified: str | None, needed: str) -> str:
    ids = ", ".join(f["id"] for f in failed[:10]) + (" ..." if len(failed) > 10 else "")
    reached = f"certified {certified}" if certified else "no level certified"
    return f"Core: {reached}, {needed} needed; {len(failed)} check(s) did not pass: {ids}"


def _set_listing(conn: Connection, provider: Provider, status: str, level: str | None,
                 reason: str | None, certified_at: str | None = None) -> None:
    values: dict[str, Any] = {"status": status, "status_reason": reason, "level": level}
    if certified_at is not None:
        values["certified_at"] = certified_at
    conn.execute(update(store.providers).where(store.providers.c.id == provider.id).values(
        **values))
    _flag_subscriptions(conn, provider.id, DELISTED_FLAG, on=status != "listed")


def _flag_subscriptions(conn: Connection, provider_id: str, flag: str, *, on: bool) -> None:
    t = store.subscriptions
    for row in conn.execute(select(t.c.id, t.c.flags_json).where(
            t.c.provider_id == provider_id, t.c.status == "active")).all():
        flags = set(json.loads(row.flags_json))
        new = flags | {flag} if on else flags - {flag}
        if new != flags:
            conn.execute(update(t).where(t.c.id == row.id).values(
                flags_json=store.dumps(sorted(new))))


def _node_identity(broker_url: str, timeout: float) -> str | None:
    """The node's Ed25519 public key from ``/federation/identity``, if it has one."""
    try:
        resp = httpx.get(broker_url + "/federation/identity", timeout=timeout)
        body = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    key = body.get("public_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def _test_plan(info: ServiceInfo) -> PlanOffer:
    # Core needs room for a few MiB: take the plan with the most (None is unlimited).
    def room(p: PlanOffer) -> tuple[int, int]:
        return (p.quota_bytes is None, p.quota_bytes or 0)

    return max(info.plans, key=room)


def _run_core(state: MarketState, provider: Provider, info: ServiceInfo) -> dict[str, Any]:
    """Two throw-away tenants (Core's main and alternate accounts must be different tenants
    for the isolation checks), one binding each; always released afterwards."""
    test_plan = _test_plan(info)
    tenants = [(f"certify-{uuid.uuid4()}", str(uuid.uuid4())) for _ in range(2)]
    service, plan_id = info.service_id, test_plan.plan_id
    with broker_for(state, provider) as broker:
        provisioned: list[str] = []
        bound: list[tuple[str, str]] = []
        try:
            creds = []
            for instance, binding in tenants:
                broker.provision(instance, service, plan_id, space="certification")
                provisioned.append(instance)
                creds.append(broker.bind(instance, binding, service, plan_id))
                bound.append((instance, binding))
            main, alt = creds
            try:
                target = Target(
                    endpoint=main["endpoint"],
                    credentials=Credentials(main["access_key_id"], main["secret_access_key"]),
                    region=str(main.get("region") or test_plan.region),
                    alt_credentials=Credentials(alt["access_key_id"], alt["secret_access_key"]),
                )
            except ValueError as bad:
                raise TargetError(f"the binding's endpoint is unusable: {bad}") from None
            result = execute(target, plan(Level(state.settings.core_level)),
                             workers=state.settings.core_workers)
            return sign_document(result.to_dict(), state.signing_key)
        finally:
            for instance, binding in bound:
                # If this fails, the deprovision below removes the binding with the tenant.
                with contextlib.suppress(BrokerError):
                    broker.unbind(instance, binding, service, plan_id)
            for instance in provisioned:
                broker.deprovision(instance, service, plan_id)
