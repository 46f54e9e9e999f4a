"""The market's JSON API under ``/api/v1/`` (OpenAPI at ``/api/v1/openapi.json``).

Every route but ``/health`` needs ``Authorization: Bearer <token>``. Roles: ``admin`` can do
everything; ``buyer`` sees offers and buys, sees and cancels its own subscriptions;
``provider`` (a provider's operator) onboards and recertifies its own providers. Errors are
``{"detail": "..."}`` with the status saying what kind (401, 403, 404, 409, 422, and
424 when a provider's broker failed a call the market needed).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from silverlining import __version__
from silverlining.market import (
    accounts,
    billing,
    budgets,
    invoices,
    moves,
    orders,
    probes,
    registry,
    store,
)
from silverlining.market.offers import (
    SORT_KEYS,
    CatalogError,
    OfferFilter,
    UsageProfile,
    sort_offers,
)
from silverlining.market.osbclient import BrokerError
from silverlining.market.state import (
    Forbidden,
    Invalid,
    MarketError,
    MarketState,
    NotFound,
    Principal,
    Unauthorized,
    Upstream,
)

API_PREFIX = "/api/v1"
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
Level = Literal["s3-basic", "s3-full"]
Policy = Literal["cheapest", "spread"]
Money = Annotated[Decimal, Field(ge=0, le=10**9, max_digits=24, decimal_places=12)]
Amount = Annotated[Decimal, Field(ge=0, le=10**12, max_digits=24, decimal_places=6)]

_bearer = HTTPBearer(auto_error=False, description="A market token: `slm_...`")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(_Body):
    name: str = Field(pattern=accounts.NAME.pattern, examples=["acme"])
    role: Literal["admin", "buyer", "provider"]


class ProviderAdd(_Body):
    name: str = Field(pattern=accounts.NAME.pattern, examples=["frankfurt-1"])
    broker_url: str = Field(max_length=2000, examples=["https://s3.example.net"])
    broker_user: str = Field(min_length=1, max_length=200)
    broker_password: str = Field(min_length=1, max_length=1000)


class Delist(_Body):
    reason: str = Field(min_length=1, max_length=500)


class OrderCreate(_Body):
    service: str = Field("object-storage", max_length=64)
    region: str | None = Field(None, max_length=64)
    jurisdiction: str | None = Field(None, max_length=16)
    min_level: Level | None = None
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    max_price_gb_month: Money | None = None
    max_price_egress_gb: Money | None = None
    min_availability: Annotated[Decimal, Field(ge=0, le=100, max_digits=7,
                                               decimal_places=4)] | None = None
    expect_gb: Amount = Decimal(0)
    expect_egress_gb: Amount = Decimal(0)
    expect_requests: int = Field(0, ge=0, le=10**15)
    write_share: Decimal = Field(Decimal("0.2"), ge=0, le=1, max_digits=6, decimal_places=4)
    policy: Policy = "cheapest"
    copies: int = Field(1, ge=1, le=orders.MAX_COPIES)
    offer_id: str | None = Field(None, max_length=64)

    def to_request(self) -> orders.OrderRequest:
        return orders.OrderRequest(
            service=self.service,
            filter=OfferFilter(region=self.region, jurisdiction=self.jurisdiction,
                               min_level=self.min_level, currency=self.currency,
                               max_price_gb_month=self.max_price_gb_month,
                               max_price_egress_gb=self.max_price_egress_gb,
                               min_availability=self.min_availability),
            profile=UsageProfile(self.expect_gb, self.expect_egress_gb, self.expect_requests,
                                 self.write_share),
            policy=self.policy, copies=self.copies, offer_id=self.offer_id)


class InvoiceCreate(_Body):
    start: str = Field(max_length=40, examples=["2026-11-01T00:00:00Z"])
    end: str = Field(max_length=40, examples=["2026-12-01T00:00:00Z"])
    account: str | None = Field(None, pattern=accounts.NAME.pattern,
                                description="admin: the buyer to invoice")


class BudgetSet(_Body):
    amount: Annotated[Decimal, Field(gt=0, le=10**12, max_digits=24, decimal_places=6)]
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    thresholds: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(None, max_length=20)


class MoveCreate(_Body):
    subscription_id: str = Field(max_length=64)
    to_provider: str | None = Field(None, pattern=accounts.NAME.pattern)
    order: OrderCreate | None = Field(
        None, description="Or: match the target like an order (cheapest, constraints)")

    def target(self) -> moves.MoveTarget:
        if self.to_provider is not None and self.order is not None:
            raise Invalid("give to_provider or order, not both")
        return moves.MoveTarget(self.to_provider,
                                None if self.order is None else self.order.to_request())


class Error(BaseModel):
    detail: str


Json = dict[str, Any]
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": Error} for s in (401, 403, 404, 409, 424)}


def _principal(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                  Depends(_bearer)]) -> Principal:
    if creds is None:
        raise Unauthorized("this needs a market token: Authorization: Bearer slm_...")
    state: MarketState = request.app.state.market
    who = accounts.authenticate(state, creds.credentials)
    if who is None:
        raise Unauthorized("the token is not valid (unknown, revoked or malformed)")
    return who


Who = Annotated[Principal, Depends(_principal)]


def _admin(who: Who) -> Principal:
    if not who.is_admin:
        raise Forbidden("only the market's admin can do that")
    return who


Admin = Annotated[Principal, Depends(_admin)]


def build_api(state: MarketState) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, responses=ERRORS)


    @router.get("/health", tags=["market"], responses={})
    def health() -> Json:
        """Liveness: the market answers and its database is reachable. No token needed."""
        with state.store.begin() as conn:
            conn.execute(select(store.settings.c.key).limit(1)).all()
        return {"status": "ok", "version": __version__}

    @router.get("/me", tags=["accounts"])
    def me(who: Who) -> Json:
        """The account the token belongs to."""
        return {"id": who.account_id, "name": who.name, "role": who.role}

    # -- accounts ------------------------------------------------------------------------------
    @router.post("/accounts", status_code=201, tags=["accounts"])
    def create_account(body: AccountCreate, who: Admin) -> Json:
        """A new account and its first token. The token is shown in this answer only."""
        account, token = accounts.create_account(state, who, body.name, body.role)
        return {"account": account.to_dict(), "token": token}

    @router.get("/accounts", tags=["accounts"])
    def list_accounts(who: Admin) -> list[Json]:
        return [a.to_dict() for a in accounts.list_accounts(state)]

    @router.post("/accounts/{name}/tokens", status_code=201, tags=["accounts"])
    def create_token(name: str, who: Admin) -> Json:
        """Another token for an account (shown in this answer only)."""
        token, token_id = accounts.create_token(state, who, _name(name, "account"))
        return {"token": token, "token_id": token_id}

    @router.delete("/tokens/{token_id}", tags=["accounts"])
    def revoke_token(token_id: str, who: Admin) -> Json:
        accounts.revoke_token(state, who, _name(token_id, "token"))
        return {"revoked": token_id}

    # -- providers -----------------------------------------------------------------------------
    @router.get("/providers", tags=["providers"])
    def list_providers(who: Who) -> list[Json]:
        """Every provider the market knows, listed or not, with its certification status."""
        return [p.to_dict() for p in registry.list_providers(state)]

    @router.post("/providers", status_code=201, tags=["providers"])
    def add_provider(body: ProviderAdd, who: Who) -> Json:
        """Onboard a provider by its broker: read the catalog, certify it with Core through a
        throw-away tenant, and list it if it passes. Answers when certification is done."""
        provider, cert = registry.add_provider(state, who, body.name, body.broker_url,
                                               body.broker_user, body.broker_password)
        return {"provider": provider.to_dict(), "certification": cert.to_dict()}

    @router.get("/providers/{name}", tags=["providers"])
    def show_provider(name: str, who: Who) -> Json:
        """A provider, its certification history and its measured figures (probes)."""
        provider = registry.get_provider(state, _name(name, "provider"))
        history = registry.certifications(state, provider.name, limit=10)
        return {**provider.to_dict(), "certifications": [c.to_dict() for c in history],
                "measured": probes.figures(state).get(provider.id)}

    @router.get("/providers/{name}/probes", tags=["providers"])
    def provider_probes(name: str, who: Who,
                        limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[Json]:
        """The provider's probe results, oldest first."""
        provider = registry.get_provider(state, _name(name, "provider"))
        return probes.history(state, provider.id, limit)

    @router.post("/providers/{name}/recertify", tags=["providers"])
    def recertify(name: str, who: Who) -> Json:
        """Run Core again now; the provider is listed or delisted on the outcome."""
        provider = registry.get_provider(state, _name(name, "provider"))
        registry.may_manage(who, provider)
        cert = registry.certify(state, who, provider.name)
        return {"provider": registry.get_provider(state, provider.name).to_dict(),
                "certification": cert.to_dict()}

    @router.post("/providers/{name}/refresh", tags=["providers"])
    def refresh(name: str, who: Who) -> Json:
        """Read the provider's catalog (prices, plans) now."""
        provider = registry.get_provider(state, _name(name, "provider"))
        registry.may_manage(who, provider)
        try:
            registry.refresh_catalog(state, who, provider.name)
        except (BrokerError, CatalogError) as error:
            raise Upstream(f"{provider.name}: {error}") from None
        return registry.get_provider(state, provider.name).to_dict()

    @router.post("/providers/{name}/delist", tags=["providers"])
    def delist(name: str, body: Delist, who: Admin) -> Json:
        """Take a provider off the market; its subscriptions keep working, flagged."""
        return registry.delist(state, who, _name(name, "provider"), body.reason).to_dict()

    @router.get("/providers/{name}/certifications", tags=["providers"])
    def provider_certifications(
            name: str, who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Json]:
        return [c.to_dict() for c in registry.certifications(
            state, _name(name, "provider"), limit)]

    @router.get("/certifications/{certification_id}/report", tags=["providers"])
    def certification_report(certification_id: str, who: Who) -> Json:
        """The signed Core report (verify it with `silverlining core verify`)."""
        return registry.certification_report(state, _name(certification_id, "certification"))

    # -- offers and orders ---------------------------------------------------------------------
    @router.get("/offers", tags=["offers"])
    def list_offers(
        who: Who,
        region: Annotated[str | None, Query(max_length=64)] = None,
        jurisdiction: Annotated[str | None, Query(max_length=16)] = None,
        min_level: Level | None = None,
        currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
        provider: Annotated[str | None, Query(max_length=64)] = None,
        max_price_gb_month: Annotated[Money | None, Query()] = None,
        max_price_egress_gb: Annotated[Money | None, Query()] = None,
        min_availability: Annotated[Decimal | None, Query(ge=0, le=100, max_digits=7,
                                                          decimal_places=4)] = None,
        expect_gb: Annotated[Amount, Query()] = Decimal(0),
        expect_egress_gb: Annotated[Amount, Query()] = Decimal(0),
        expect_requests: Annotated[int, Query(ge=0, le=10**15)] = 0,
        write_share: Annotated[Decimal, Query(ge=0, le=1, max_digits=6,
                                              decimal_places=4)] = Decimal("0.2"),
        sort: Literal["estimate", "price_gb_month", "price_egress_gb", "provider", "region",
                      "level"] = "estimate",
    ) -> list[Json]:
        """Every plan of every listed provider, filtered and sorted; ``expected_monthly_cost``
        is what the given usage profile would cost on each (storage, egress, requests)."""
        assert sort in SORT_KEYS
        wanted = OfferFilter(region=region, jurisdiction=jurisdiction, min_level=min_level,
                             currency=currency, max_price_gb_month=max_price_gb_month,
                             max_price_egress_gb=max_price_egress_gb, provider=provider,
                             min_availability=min_availability)
        profile = UsageProfile(expect_gb, expect_egress_gb, expect_requests, write_share)
        found = [o for o in orders.listed_offers(state) if wanted.admits(o)]
        return [orders.offer_view(o, profile) for o in sort_offers(found, sort, profile)]

    @router.post("/orders/preview", tags=["orders"])
    def preview(body: OrderCreate, who: Who) -> Json:
        """The offers an order would land on, best first, with their expected monthly cost;
        nothing is bought."""
        request = body.to_request()
        ranked = orders.match(state, request)
        return {"request": request.to_dict(),
                "candidates": [orders.offer_view(o, request.profile) for o in ranked]}

    @router.post("/orders", status_code=201, tags=["orders"])
    def create_order(body: OrderCreate, who: Who) -> Json:
        """Buy: match, provision and bind through the providers' brokers. The answer holds
        each new subscription's endpoint and keys (the secret is shown here, and on request)."""
        orders.require_buyer(who)
        return orders.buy(state, who, body.to_request()).to_dict()

    @router.get("/orders/{order_id}", tags=["orders"])
    def show_order(order_id: str, who: Who) -> Json:
        return orders.get_order(state, who, _name(order_id, "order"))

    @router.get("/subscriptions", tags=["subscriptions"])
    def list_subscriptions(
            who: Who, all: Annotated[bool, Query(description="admin: everyone's")] = False,
    ) -> list[Json]:
        return orders.list_subscriptions(state, who, everyone=all)

    @router.get("/subscriptions/{subscription_id}", tags=["subscriptions"])
    def show_subscription(subscription_id: str, who: Who, reveal: bool = False) -> Json:
        """One subscription; ``reveal=true`` includes the secret access key."""
        return orders.get_subscription(state, who, _name(subscription_id, "subscription"),
                                       reveal=reveal)

    @router.delete("/subscriptions/{subscription_id}", tags=["subscriptions"])
    def cancel_subscription(subscription_id: str, who: Who) -> Json:
        """Cancel: unbind and deprovision. The provider deletes the data."""
        return orders.cancel(state, who, _name(subscription_id, "subscription"))

    # -- moves ---------------------------------------------------------------------------------
    @router.post("/moves/quote", tags=["moves"])
    def quote_move(body: MoveCreate, who: Who) -> Json:
        """What moving a subscription would do: the target offer, the objects and bytes to
        copy, and the egress they cost at the source's price. Nothing is changed."""
        return moves.quote(state, who, _name(body.subscription_id, "subscription"),
                           body.target())

    @router.post("/moves", status_code=202, tags=["moves"])
    def start_move(body: MoveCreate, request: Request, who: Who) -> Json:
        """Start a move; it runs in the market (follow it at GET /moves/{id})."""
        orders.require_buyer(who)
        return moves.start(state, who, _name(body.subscription_id, "subscription"),
                           body.target(), request.app.state.mover)

    @router.get("/moves", tags=["moves"])
    def list_moves(who: Who) -> list[Json]:
        return moves.list_moves(state, who)

    @router.get("/moves/{move_id}", tags=["moves"])
    def show_move(move_id: str, who: Who) -> Json:
        return moves.get_move(state, who, _name(move_id, "move"))

    # -- billing -------------------------------------------------------------------------------
    @router.post("/billing/collect", tags=["billing"])
    def collect_usage(who: Admin) -> Json:
        """Collect the providers' signed usage records now (the schedule does it too)."""
        report = billing.collect(state, who)
        budgets.check_alerts(state)
        return report.to_dict()

    @router.get("/billing/disputes", tags=["billing"])
    def disputes(who: Admin) -> list[Json]:
        """Usage batches or records the market refused: bad signatures, changed hours."""
        return billing.list_disputes(state)

    @router.get("/billing/ledger/verify", tags=["billing"])
    def ledger_verify(who: Admin) -> Json:
        """Every transaction balances; every record is priced once, as pricing says."""
        return billing.verify_ledger(state)

    @router.get("/subscriptions/{subscription_id}/usage", tags=["billing"])
    def subscription_usage(subscription_id: str, who: Who) -> Json:
        """The raw signed usage records of a subscription beside their priced lines."""
        sub = orders.get_subscription(state, who, _name(subscription_id, "subscription"))
        return billing.subscription_usage(state, sub)

    @router.post("/invoices", status_code=201, tags=["billing"])
    def create_invoice(body: InvoiceCreate, who: Who) -> list[Json]:
        """Invoice a period now (one invoice per currency charged)."""
        account_id = who.account_id
        if body.account is not None and body.account != who.name:
            if not who.is_admin:
                raise Forbidden("only the admin can invoice another account")
            account_id = next((a.id for a in accounts.list_accounts(state)
                               if a.name == body.account), "")
            if not account_id:
                raise NotFound(f"no account named {body.account!r}")
        return invoices.create_invoices(state, who, account_id, body.start, body.end)

    @router.post("/invoices/monthly", tags=["billing"])
    def monthly(who: Admin, month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")]) -> Json:
        """Monthly invoices for ``month`` (YYYY-MM) for every buyer charged in it that has
        none yet (the schedule does this once a month has ended)."""
        return {"month": month, "created": invoices.monthly_invoices(state, who, month)}

    @router.get("/invoices", tags=["billing"])
    def list_invoices(who: Who) -> list[Json]:
        return invoices.list_invoices(state, who)

    @router.get("/invoices/{invoice_id}", tags=["billing"],
                responses={200: {"content": {"text/csv": {}}}})
    def show_invoice(invoice_id: str, who: Who,
                     format: Literal["json", "csv"] = "json") -> Any:
        """An invoice with its itemised lines; ``format=csv`` gives FOCUS columns."""
        invoice = invoices.get_invoice(state, who, _name(invoice_id, "invoice"))
        if format == "csv":
            return PlainTextResponse(invoices.invoice_csv(invoice), media_type="text/csv")
        return invoice

    @router.get("/providers/{name}/statement", tags=["billing"])
    def statement(name: str, who: Who, start: Annotated[str, Query(max_length=40)],
                  end: Annotated[str, Query(max_length=40)]) -> Json:
        """What the market owes a provider for a period, itemised, and the market's fee."""
        return invoices.provider_statement(state, who, _name(name, "provider"), start, end)

    @router.get("/budget", tags=["billing"])
    def get_budget(who: Who) -> Json:
        """This month's spend against the budget, and the alerts."""
        return budgets.budget_status(state, who)

    @router.put("/budget", tags=["billing"])
    def put_budget(body: BudgetSet, who: Who) -> Json:
        return budgets.set_budget(state, who, body.amount, body.currency, body.thresholds)

    @router.delete("/budget", tags=["billing"])
    def delete_budget(who: Who) -> Json:
        budgets.clear_budget(state, who)
        return budgets.budget_status(state, who)

    # -- audit ---------------------------------------------------------------------------------
    @router.get("/audit", tags=["market"])
    def audit_log(
        who: Admin,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> list[Json]:
        """Every state change, oldest first, from sequence number ``after``."""
        t = store.audit
        with state.store.begin() as conn:
            rows = conn.execute(select(t).where(t.c.seq > after).order_by(t.c.seq)
                                .limit(limit)).all()
        return [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
                 "subject": r.subject, "detail": json.loads(r.detail_json)} for r in rows]

    return router


def _name(value: str, what: str) -> str:
    # Path values reach SQL only when they could be a name or id at all.
    if not _ID.match(value):
        raise NotFound(f"no {what} {value[:64]!r}")
    return value


def install(app: FastAPI, state: MarketState) -> None:
    app.state.market = state
    app.include_router(build_api(state))

    @app.exception_handler(MarketError)
    async def market_error(request: Request, error: MarketError) -> JSONResponse:
        body: dict[str, Any] = {"detail": error.message}
        order = getattr(error, "order", None)
        if isinstance(order, orders.Order):
            body["order"] = order.to_dict()
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(body, status_code=error.status, headers=headers)
