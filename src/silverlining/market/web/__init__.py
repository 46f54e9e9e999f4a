"""The market's web interface, on the same server as the API: server-rendered HTML, no
script, SVG charts (works offline and without JavaScript).

Sign-in puts the token in an ``HttpOnly``, ``SameSite=Strict`` cookie. Every form that
changes state carries a CSRF token (double submit: it must equal the ``slm_csrf`` cookie);
a POST without it is refused with 403. Secrets never go into a URL: revealing a secret key
is a POST, and the page that shows it is not cached.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import inspect
import json
import secrets
import urllib.parse
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

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
from silverlining.market.offers import SORT_KEYS, OfferFilter, UsageProfile, sort_offers
from silverlining.market.state import MarketError, MarketState, Principal
from silverlining.market.web.charts import line_chart

SESSION = "slm_session"
CSRF = "slm_csrf"
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]))
FORM_FIELDS = (("region", "Region", "text"), ("jurisdiction", "Jurisdiction", "text"),
               ("min_level", "Minimum level", "text"), ("currency", "Currency", "text"),
               ("max_price_gb_month", "Max price per GB-month", "decimal"),
               ("min_availability", "Min availability %", "decimal"),
               ("expect_gb", "GB stored", "decimal"),
               ("expect_egress_gb", "GB downloaded per month", "decimal"),
               ("expect_requests", "Requests per month", "numeric"),
               ("policy", "Policy", "text"), ("copies", "Copies (spread)", "numeric"))
OFFER_COLUMNS = (("provider", "Provider"), ("", "Plan"), ("region", "Region"),
                 ("", "Jurisdiction"), ("level", "Level"),
                 ("price_gb_month", "GB-month"), ("price_egress_gb", "Egress GB"),
                 ("", "1k writes / reads"), ("", "Availability"), ("", "p50 / p99 ms"),
                 ("estimate", "Expected / month"))


class _Login(Exception):
    pass


class _Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _nav(who: Principal) -> list[tuple[str, str]]:
    items = [("/offers", "Offers"), ("/providers", "Providers"), ("/buy", "Buy"),
             ("/subscriptions", "Subscriptions"), ("/billing", "Billing")]
    if who.is_admin:
        items.append(("/admin", "Admin"))
    return items


def build_web(state: MarketState) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def csrf_of(request: Request) -> str:
        token = request.cookies.get(CSRF)
        return token if token and len(token) == 43 else secrets.token_urlsafe(32)

    def render(request: Request, template: str, who: Principal | None, status: int = 200,
               **ctx: Any) -> HTMLResponse:
        csrf = csrf_of(request)
        html = _env.get_template(template).render(
            who=who, nav=_nav(who) if who else [], csrf=csrf,
            active="/" + request.url.path.strip("/").split("/")[0], **ctx)
        resp = HTMLResponse(html, status_code=status)
        resp.set_cookie(CSRF, csrf, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        return resp

    def user(request: Request) -> Principal:
        token = request.cookies.get(SESSION)
        who = accounts.authenticate(state, token) if token else None
        if who is None:
            raise _Login()
        return who

    async def form(request: Request) -> dict[str, str]:
        """The POSTed form, after the CSRF check (403 without a matching token)."""
        body = (await request.body()).decode("utf-8", "replace")
        fields = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True)
                  .items()}
        cookie = request.cookies.get(CSRF, "")
        if not cookie or not hmac.compare_digest(cookie, fields.get("csrf", "")):
            raise _Denied(403, "The form's security token is missing or stale: reload the "
                          "page and try again.")
        return fields

    def page(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(request: Request, **kw: Any) -> Response:
            try:
                result: Response = await fn(request, **kw)
                return result
            except _Login:
                return RedirectResponse("/login", status_code=303)
            except _Denied as denied:
                return render(request, "message.html", None, denied.status, title="Refused",
                              message=str(denied))
            except MarketError as error:
                who = None
                with contextlib.suppress(_Login):
                    who = user(request)
                return render(request, "message.html", who, error.status,
                              title="That did not work", message=error.message)
        wrapper.__name__ = fn.__name__
        wrapper.__signature__ = _signature(fn)  # type: ignore[attr-defined]
        return wrapper

    # -- sign in -------------------------------------------------------------------------
    @router.get("/")
    @page
    async def home(request: Request) -> Response:
        user(request)
        return RedirectResponse("/offers", status_code=303)

    @router.get("/login")
    @page
    async def login_form(request: Request) -> Response:
        return render(request, "login.html", None, title="Sign in")

    @router.post("/login")
    @page
    async def login(request: Request) -> Response:
        fields = await form(request)
        token = fields.get("token", "").strip()
        who = accounts.authenticate(state, token)
        if who is None:
            return render(request, "login.html", None, 401, title="Sign in",
                          error="That token is not valid.")
        resp = RedirectResponse("/offers", status_code=303)
        resp.set_cookie(SESSION, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        return resp

    @router.post("/logout")
    @page
    async def logout(request: Request) -> Response:
        await form(request)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION, path="/")
        return resp

    # -- offers and providers -------------------------------------------------------------
    @router.get("/offers")
    @page
    async def offers_page(request: Request) -> Response:
        who = user(request)
        q = dict(request.query_params)
        sort = q["sort"] if q.get("sort") in SORT_KEYS else "estimate"
        try:
            wanted = OfferFilter(
                region=q.get("region") or None, jurisdiction=q.get("jurisdiction") or None,
                min_level=q.get("min_level") or None,
                max_price_gb_month=_dec(q.get("max_price_gb_month")),
                min_availability=_dec(q.get("min_availability")))
            profile = UsageProfile(_dec(q.get("expect_gb")) or Decimal(0),
                                   _dec(q.get("expect_egress_gb")) or Decimal(0),
                                   int(q.get("expect_requests") or 0))
        except (InvalidOperation, ValueError):
            raise MarketError("The filters need numbers where numbers are asked.") from None
        found = [o for o in orders.listed_offers(state) if wanted.admits(o)]
        reports = _latest_reports(state)
        rows = []
        for o in sort_offers(found, sort, profile):
            view = orders.offer_view(o, profile)
            view["report_id"] = reports.get(o.provider_id)
            rows.append(view)

        def sort_link(key: str) -> str:
            return "/offers?" + urllib.parse.urlencode({**q, "sort": key})

        return render(request, "offers.html", who, title="Offers", offers=rows, q=q,
                      sort=sort, columns=OFFER_COLUMNS, sort_link=sort_link)

    @router.get("/providers")
    @page
    async def providers_page(request: Request) -> Response:
        who = user(request)
        measured = probes.figures(state)
        rows = [{**p.to_dict(), "availability": measured.get(p.id, {}).get("availability")}
                for p in registry.list_providers(state)]
        return render(request, "providers.html", who, title="Providers", providers=rows)

    @router.get("/providers/{name}")
    @page
    async def provider_page(request: Request, name: str) -> Response:
        who = user(request)
        p = registry.get_provider(state, name)
        certs = registry.certifications(state, name, limit=50)
        checks: list[dict[str, Any]] = []
        if certs and p.last_certification_id:
            try:
                checks = registry.certification_report(state, certs[0].id)["checks"]
            except MarketError:
                checks = []
        with state.store.begin() as conn:
            has_report = {r.id for r in conn.execute(select(store.certifications.c.id).where(
                store.certifications.c.provider_id == p.id,
                store.certifications.c.report_json.is_not(None))).all()}
        history = probes.history(state, p.id, limit=500)
        group = max(1, len(history) // 40)
        avail_points = []
        for i in range(0, len(history), group):
            chunk = history[i:i + group]
            avail_points.append((chunk[-1]["at"][11:19],
                                 100.0 * sum(h["ok"] for h in chunk) / len(chunk)))
        latency_points = [(h["at"][11:19], float(h["latency_ms"]) if h["ok"] and
                           h["latency_ms"] is not None else None) for h in history[-80:]]
        prices = _price_history(state, p.id)
        price_points = [(h["at"][:19], float(h["prices"]["gb_month"])) for h in prices]
        return render(
            request, "provider.html", who, title=p.name, p=p,
            measured=probes.figures(state).get(p.id), group=group,
            availability_chart=line_chart(f"Availability of {p.name}", avail_points,
                                          unit="%", y_max=100.0),
            latency_chart=line_chart(f"Probe latency of {p.name}", latency_points, unit="ms"),
            price_chart=line_chart(f"Price per GB-month at {p.name}", price_points,
                                   unit=prices[0]["prices"]["currency"] if prices else ""),
            certifications=[{**c.to_dict(), "has_report": c.id in has_report} for c in certs],
            checks=checks, prices=prices)

    @router.get("/reports/{certification_id}")
    @page
    async def report(request: Request, certification_id: str) -> Response:
        user(request)
        document = registry.certification_report(state, certification_id[:64])
        return Response(json.dumps(document, indent=2, ensure_ascii=False),
                        media_type="application/json",
                        headers={"Content-Disposition":
                                 f'inline; filename="core-report-{certification_id[:36]}.json"'})

    # -- buying ---------------------------------------------------------------------------
    def order_request(fields: dict[str, str]) -> orders.OrderRequest:
        try:
            return orders.OrderRequest(
                filter=OfferFilter(
                    region=fields.get("region") or None,
                    jurisdiction=fields.get("jurisdiction") or None,
                    min_level=fields.get("min_level") or None,
                    currency=fields.get("currency") or None,
                    max_price_gb_month=_dec(fields.get("max_price_gb_month")),
                    min_availability=_dec(fields.get("min_availability"))),
                profile=UsageProfile(_dec(fields.get("expect_gb")) or Decimal(0),
                                     _dec(fields.get("expect_egress_gb")) or Decimal(0),
                                     int(fields.get("expect_requests") or 0)),
                policy=fields.get("policy") or "cheapest",
                copies=int(fields.get("copies") or 1))
        except (InvalidOperation, ValueError):
            raise MarketError("The order needs numbers where numbers are asked.") from None

    @router.get("/buy")
    @page
    async def buy_form(request: Request) -> Response:
        who = user(request)
        return render(request, "buy.html", who, title="Buy", f={"policy": "cheapest",
                                                               "copies": "1"},
                      form_fields=FORM_FIELDS)

    @router.post("/buy/preview")
    @page
    async def buy_preview(request: Request) -> Response:
        who = user(request)
        fields = await form(request)
        request_ = order_request(fields)
        ranked = orders.match(state, request_)
        if not ranked:
            return render(request, "buy.html", who, 409, title="Buy", f=fields,
                          form_fields=FORM_FIELDS, error="No listed offer matches.")
        preview = {"candidates": [orders.offer_view(o, request_.profile) for o in ranked]}
        return render(request, "buy.html", who, title="Buy", f=fields, preview=preview,
                      form_fields=FORM_FIELDS)

    @router.post("/buy")
    @page
    async def buy(request: Request) -> Response:
        who = user(request)
        fields = await form(request)
        orders.require_buyer(who)
        order = await run_in_threadpool(orders.buy, state, who, order_request(fields))
        return render(request, "buy.html", who, 201, title="Bought", f=fields,
                      order=order.to_dict(), form_fields=FORM_FIELDS)

    # -- subscriptions and moves ----------------------------------------------------------
    @router.get("/subscriptions")
    @page
    async def subscriptions_page(request: Request) -> Response:
        who = user(request)
        return render(request, "subscriptions.html", who, title="Subscriptions",
                      subs=orders.list_subscriptions(state, who),
                      moves=moves.list_moves(state, who))

    def subscription_page(request: Request, who: Principal, sub_id: str, *,
                          reveal: bool = False, quote: dict[str, Any] | None = None,
                          status: int = 200, info: str | None = None) -> Response:
        sub = orders.get_subscription(state, who, sub_id[:64], reveal=reveal)
        targets = sorted({o.provider for o in orders.listed_offers(state)} - {sub["provider"]})
        return render(request, "subscription.html", who, status, title="Subscription", s=sub,
                      usage=billing.subscription_usage(state, sub), targets=targets,
                      quote=quote, info=info)

    @router.get("/subscriptions/{sub_id}")
    @page
    async def subscription_get(request: Request, sub_id: str) -> Response:
        return subscription_page(request, user(request), sub_id)

    @router.post("/subscriptions/{sub_id}/reveal")
    @page
    async def subscription_reveal(request: Request, sub_id: str) -> Response:
        who = user(request)
        await form(request)
        return subscription_page(request, who, sub_id, reveal=True)

    @router.post("/subscriptions/{sub_id}/move/quote")
    @page
    async def move_quote(request: Request, sub_id: str) -> Response:
        who = user(request)
        fields = await form(request)
        quote = await run_in_threadpool(moves.quote, state, who, sub_id[:64],
                                        moves.MoveTarget(fields.get("to_provider") or None))
        return subscription_page(request, who, sub_id, quote=quote)

    @router.post("/subscriptions/{sub_id}/move")
    @page
    async def move_start(request: Request, sub_id: str) -> Response:
        who = user(request)
        fields = await form(request)
        orders.require_buyer(who)
        await run_in_threadpool(moves.start, state, who, sub_id[:64],
                                moves.MoveTarget(fields.get("to_provider") or None),
                                request.app.state.mover)
        return RedirectResponse("/subscriptions", status_code=303)

    @router.post("/subscriptions/{sub_id}/cancel")
    @page
    async def cancel(request: Request, sub_id: str) -> Response:
        who = user(request)
        fields = await form(request)
        if fields.get("confirm") != "yes":
            raise MarketError("Tick the box to confirm: cancelling deletes the data.")
        await run_in_threadpool(orders.cancel, state, who, sub_id[:64])
        return RedirectResponse("/subscriptions", status_code=303)

    # -- billing --------------------------------------------------------------------------
    @router.get("/billing")
    @page
    async def billing_page(request: Request) -> Response:
        who = user(request)
        today = dt.date.today()
        return render(request, "billing.html", who, title="Billing",
                      invoices=invoices.list_invoices(state, who),
                      budget=budgets.budget_status(state, who),
                      default_start=today.replace(day=1).isoformat(),
                      default_end=(today + dt.timedelta(days=1)).isoformat())

    @router.post("/billing/budget")
    @page
    async def set_budget(request: Request) -> Response:
        who = user(request)
        fields = await form(request)
        try:
            amount = Decimal(fields.get("amount", ""))
            marks = [int(x) for x in fields.get("alerts", "").split(",") if x.strip()]
        except (InvalidOperation, ValueError):
            raise MarketError("The budget is an amount, the alerts percentages.") from None
        budgets.set_budget(state, who, amount, fields.get("currency") or "EUR", marks)
        return RedirectResponse("/billing", status_code=303)

    @router.post("/billing/invoices")
    @page
    async def make_invoice(request: Request) -> Response:
        who = user(request)
        fields = await form(request)
        made = invoices.create_invoices(state, who, who.account_id, fields.get("start", ""),
                                        fields.get("end", ""))
        if not made:
            raise MarketError("Nothing was charged in that period: no invoice to make.")
        return RedirectResponse(f"/billing/invoices/{made[0]['id']}", status_code=303)

    @router.get("/billing/invoices/{invoice_id}.csv")
    @page
    async def invoice_csv(request: Request, invoice_id: str) -> Response:
        who = user(request)
        inv = invoices.get_invoice(state, who, invoice_id[:64])
        return Response(invoices.invoice_csv(inv), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="invoice-{inv["id"]}.csv"'})

    @router.get("/billing/invoices/{invoice_id}")
    @page
    async def invoice_page(request: Request, invoice_id: str) -> Response:
        who = user(request)
        return render(request, "invoice.html", who, title="Invoice",
                      inv=invoices.get_invoice(state, who, invoice_id[:64]))

    # -- admin ----------------------------------------------------------------------------
    def admin(request: Request) -> Principal:
        who = user(request)
        if not who.is_admin:
            raise _Denied(403, "Only the market's admin can see this page.")
        return who

    def admin_page(request: Request, who: Principal, status: int = 200,
                   info: str | None = None, error: str | None = None) -> Response:
        t = store.audit
        with state.store.begin() as conn:
            rows = conn.execute(select(t).order_by(t.c.seq.desc()).limit(200)).all()
        return render(request, "admin.html", who, status, title="Admin",
                      providers=registry.list_providers(state), audit=rows, info=info,
                      error=error)

    @router.get("/admin")
    @page
    async def admin_get(request: Request) -> Response:
        return admin_page(request, admin(request))

    @router.post("/admin/providers")
    @page
    async def admin_onboard(request: Request) -> Response:
        who = admin(request)
        fields = await form(request)
        provider, cert = await run_in_threadpool(
            registry.add_provider, state, who, fields.get("name", ""),
            fields.get("broker_url", ""), fields.get("broker_user", ""),
            fields.get("broker_password", ""))
        if cert.passed:
            return admin_page(request, who, info=f"{provider.name} is listed: certified "
                              f"{cert.certified}.")
        return admin_page(request, who, error=f"{provider.name} is {provider.status}: "
                          f"{provider.status_reason}")

    @router.post("/admin/providers/{name}/recertify")
    @page
    async def admin_recertify(request: Request, name: str) -> Response:
        who = admin(request)
        await form(request)
        cert = await run_in_threadpool(registry.certify, state, who, name[:64])
        return admin_page(request, who, info=f"{name}: certification "
                          f"{'passed' if cert.passed else 'did not pass'}.")

    @router.post("/admin/providers/{name}/delist")
    @page
    async def admin_delist(request: Request, name: str) -> Response:
        who = admin(request)
        fields = await form(request)
        registry.delist(state, who, name[:64], fields.get("reason") or "by the admin")
        return admin_page(request, who, info=f"{name} is delisted.")

    return router


def _dec(text: str | None) -> Decimal | None:
    if text is None or not text.strip():
        return None
    value = Decimal(text.strip())
    if not value.is_finite() or value < 0:
        raise ValueError(text)
    return value


def _latest_reports(state: MarketState) -> dict[str, str]:
    with state.store.begin() as conn:
        rows = conn.execute(select(store.providers.c.id, store.providers.c.last_certification_id)
                            ).all()
    return {r.id: r.last_certification_id for r in rows if r.last_certification_id}


def _price_history(state: MarketState, provider_id: str) -> list[dict[str, Any]]:
    h, o = store.price_history, store.offers
    with state.store.begin() as conn:
        rows = conn.execute(select(h.c.at, h.c.prices_json, o.c.plan_name).join(
            o, o.c.id == h.c.offer_id).where(o.c.provider_id == provider_id).order_by(
            h.c.seq)).all()
    return [{"at": r.at, "plan": r.plan_name, "prices": json.loads(r.prices_json)}
            for r in rows]


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)

