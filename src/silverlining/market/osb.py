"""The market as an Open Service Broker (v2.17) under ``/v2/``: a Cloud Foundry or Kubernetes
platform buys from the whole federation with its own tooling.

The catalog has one service, ``object-storage``, with a ``cheapest`` plan (the market's
matching, driven by the provision's ``parameters``: region, jurisdiction, min_level,
currency, max_price_gb_month, expect_gb, expect_egress_gb, expect_requests) and one plan
per listed offer (that offer only). A provision places an order exactly as ``market buy``
does; a bind makes a new binding on the provider's instance; a deprovision cancels the
subscription. HTTP Basic auth: any user name, and a buyer's (or the admin's) market token as
the password; what the platform buys belongs to that account. Everything is synchronous.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool

from silverlining.market import accounts, orders, store
from silverlining.market.offers import LEVELS, SERVICE_NAME, OfferFilter, UsageProfile
from silverlining.market.orders import OrderFailed, OrderRequest
from silverlining.market.osbclient import BrokerError
from silverlining.market.registry import broker_for, get_provider
from silverlining.market.state import MarketError, MarketState, Principal, record

MIN_VERSION = (2, 13)
_NS = uuid.UUID("5f0d3c8e-2b8a-4a51-8f4e-0c9a3d1b7e62")
PARAMETERS = ("region", "jurisdiction", "min_level", "currency", "max_price_gb_month",
              "max_price_egress_gb", "expect_gb", "expect_egress_gb", "expect_requests",
              "write_share")


class OsbError(Exception):
    def __init__(self, status: int, description: str, error: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.error = error


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def build_osb(state: MarketState) -> APIRouter:
    router = APIRouter(prefix="/v2", include_in_schema=False)
    service_id = str(uuid.uuid5(_NS, "service/" + SERVICE_NAME))
    cheapest_id = str(uuid.uuid5(_NS, "plan/cheapest"))

    def principal(request: Request) -> Principal:
        version = request.headers.get("x-broker-api-version", "")
        try:
            major, minor = (int(x) for x in version.split(".")[:2])
        except ValueError:
            major, minor = 0, 0
        header = request.headers.get("authorization", "")
        who = None
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode()
                who = accounts.authenticate(state, decoded.partition(":")[2])
            except (binascii.Error, UnicodeDecodeError):
                who = None
        if who is None:
            raise OsbError(401, "Basic auth with a market token as the password is needed")
        if (major, minor) < MIN_VERSION:
            raise OsbError(412, f"X-Broker-API-Version {version or '(none)'} is not "
                           f"supported; 2.13 or later is")
        if who.role not in ("admin", "buyer"):
            raise OsbError(403, "only buyers (and the admin) can buy through the broker")
        return who

    def catalog() -> dict[str, Any]:
        plans: list[dict[str, Any]] = [{
            "id": cheapest_id, "name": "cheapest", "bindable": True, "free": False,
            "description": "The listed offer with the lowest expected monthly cost for the "
                           "usage profile given in the parameters",
            "metadata": {"displayName": "Cheapest matching offer",
                         "parameters": list(PARAMETERS)},
            "schemas": {"service_instance": {"create": {"parameters": _parameter_schema()}}},
        }]
        for offer in orders.listed_offers(state):
            view = orders.offer_view(offer)
            plans.append({
                "id": offer.id, "name": _plan_name(offer.provider, offer.plan.plan_name),
                "description": f"{offer.plan.plan_name} at {offer.provider} "
                               f"({offer.plan.region}): {offer.plan.description}",
                "bindable": True, "free": False,
                "metadata": {"provider": offer.provider, "region": offer.plan.region,
                             "jurisdiction": offer.plan.jurisdiction, "level": offer.level,
                             "prices": view["prices"], "quota": view["quota"]},
            })
        return {"services": [{
            "id": service_id, "name": SERVICE_NAME, "bindable": True,
            "description": "S3-compatible object storage from certified providers of the "
                           "Silver Lining federated market",
            "tags": ["s3", "object-storage", "silverlining", "market"],
            "instances_retrievable": True, "bindings_retrievable": True,
            "plan_updateable": False, "plans": plans,
        }]}

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise OsbError(400, "the body is not JSON", "BadRequest") from None
        if not isinstance(body, dict):
            raise OsbError(400, "the body must be a JSON object", "BadRequest")
        return body

    @router.get("/catalog")
    def get_catalog(request: Request) -> JSONResponse:
        principal(request)
        return _json(200, catalog())

    @router.put("/service_instances/{instance_id}")
    async def provision(instance_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        body = await body_of(request)
        if body.get("service_id") != service_id:
            raise OsbError(400, "unknown service_id", "BadRequest")
        plan_id = body.get("plan_id")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise OsbError(400, "parameters must be an object", "BadRequest")
        existing = _instance(instance_id)
        if existing is not None:
            same = (existing.plan_id == plan_id
                    and json.loads(existing.parameters_json) == params)
            if same:
                return _json(200, {})
            raise OsbError(409, f"instance {instance_id} exists with other attributes")
        request_ = _order_request(plan_id, params)
        try:
            order = await run_in_threadpool(orders.buy, state, who, request_)
        except OrderFailed as failed:
            status = 400 if not failed.order.attempts else 502
            raise OsbError(status, failed.message) from None
        except MarketError as error:
            raise OsbError(400, error.message, "BadRequest") from None
        sub = order.subscriptions[0]
        with state.store.begin() as conn:
            conn.execute(insert(store.osb_instances).values(
                instance_id=instance_id, account_id=who.account_id, service_id=service_id,
                plan_id=plan_id, parameters_json=store.dumps(params),
                subscription_id=sub["id"], order_id=order.id, created_at=store.now()))
            record(conn, who, "osb.provision", instance_id, subscription=sub["id"])
        return _json(201, {})

    def _order_request(plan_id: Any, params: dict[str, Any]) -> OrderRequest:
        if plan_id != cheapest_id and not any(o.id == plan_id
                                              for o in orders.listed_offers(state)):
            raise OsbError(400, "unknown plan_id", "BadRequest")
        unknown = set(params) - set(PARAMETERS)
        if unknown:
            raise OsbError(400, f"unknown parameters: {', '.join(sorted(unknown))}",
                           "BadRequest")
        try:
            level = params.get("min_level")
            if level is not None and level not in LEVELS:
                raise ValueError(f"min_level must be one of {', '.join(LEVELS)}")
            profile = UsageProfile(_dec(params, "expect_gb", "0"),
                                   _dec(params, "expect_egress_gb", "0"),
                                   int(params.get("expect_requests", 0)),
                                   _dec(params, "write_share", "0.2"))
            wanted = OfferFilter(
                region=_str(params, "region"), jurisdiction=_str(params, "jurisdiction"),
                min_level=level, currency=_str(params, "currency"),
                max_price_gb_month=_opt_dec(params, "max_price_gb_month"),
                max_price_egress_gb=_opt_dec(params, "max_price_egress_gb"))
        except (ValueError, TypeError, InvalidOperation) as bad:
            raise OsbError(400, f"bad parameters: {bad}", "BadRequest") from None
        return OrderRequest(filter=wanted, profile=profile,
                            offer_id=None if plan_id == cheapest_id else str(plan_id))

    def _instance(instance_id: str) -> Any:
        with state.store.begin() as conn:
            return conn.execute(select(store.osb_instances).where(
                store.osb_instances.c.instance_id == instance_id)).first()

    def _owned_instance(instance_id: str, who: Principal) -> Any:
        row = _instance(instance_id)
        if row is None or (row.account_id != who.account_id and not who.is_admin):
            raise OsbError(404, f"no instance {instance_id}")
        return row

    @router.get("/service_instances/{instance_id}")
    def get_instance(instance_id: str, request: Request) -> JSONResponse:
        row = _owned_instance(instance_id, principal(request))
        return _json(200, {"service_id": row.service_id, "plan_id": row.plan_id,
                           "parameters": json.loads(row.parameters_json)})

    @router.get("/service_instances/{instance_id}/last_operation")
    def last_operation(instance_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        if _instance(instance_id) is None:
            return _json(410, {})
        _owned_instance(instance_id, who)
        return _json(200, {"state": "succeeded"})

    @router.delete("/service_instances/{instance_id}")
    def deprovision(instance_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        if _instance(instance_id) is None:
            return _json(410, {})
        row = _owned_instance(instance_id, who)
        sub = orders.get_subscription(state, who, row.subscription_id)
        if sub["status"] == "active":
            _unbind_all(instance_id, sub)
            try:
                orders.cancel(state, who, row.subscription_id)
            except MarketError as error:
                raise OsbError(502, error.message) from None
        with state.store.begin() as conn:
            conn.execute(delete(store.osb_instances).where(
                store.osb_instances.c.instance_id == instance_id))
            record(conn, who, "osb.deprovision", instance_id,
                   subscription=row.subscription_id)
        return _json(200, {})

    def _unbind_all(instance_id: str, sub: dict[str, Any]) -> None:
        with state.store.begin() as conn:
            rows = conn.execute(select(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id)).all()
            conn.execute(delete(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id))
        for row in rows:
            _provider_unbind(sub, row.provider_binding_id)

    def _provider_unbind(sub: dict[str, Any], provider_binding_id: str) -> None:
        provider = get_provider(state, sub["provider"])
        with state.store.begin() as conn:
            srow = conn.execute(select(store.subscriptions).where(
                store.subscriptions.c.id == sub["id"])).one()
        try:
            with broker_for(state, provider) as broker:
                broker.unbind(srow.instance_id, provider_binding_id, srow.service_id,
                              srow.plan_id)
        except BrokerError as error:
            raise OsbError(502, f"{provider.name}: {error}") from None

    @router.put("/service_instances/{instance_id}/service_bindings/{binding_id}")
    async def bind(instance_id: str, binding_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        await body_of(request)
        row = _owned_instance(instance_id, who)
        context = f"osb-binding/{instance_id}/{binding_id}"
        with state.store.begin() as conn:
            existing = conn.execute(select(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id,
                store.osb_bindings.c.binding_id == binding_id)).first()
        if existing is not None:
            creds = json.loads(state.vault.open(existing.credentials, context))
            return _json(200, {"credentials": creds})
        creds = await run_in_threadpool(_provider_bind, who, row.subscription_id)
        provider_binding_id = creds.pop("_binding_id")
        with state.store.begin() as conn:
            conn.execute(insert(store.osb_bindings).values(
                instance_id=instance_id, binding_id=binding_id,
                provider_binding_id=provider_binding_id,
                credentials=state.vault.seal(json.dumps(creds), context),
                created_at=store.now()))
            record(conn, who, "osb.bind", f"{instance_id}/{binding_id}")
        return _json(201, {"credentials": creds})

    def _provider_bind(who: Principal, subscription_id: str) -> dict[str, Any]:
        sub = orders.get_subscription(state, who, subscription_id)
        provider = get_provider(state, sub["provider"])
        with state.store.begin() as conn:
            srow = conn.execute(select(store.subscriptions).where(
                store.subscriptions.c.id == subscription_id)).one()
        binding = str(uuid.uuid4())
        try:
            with broker_for(state, provider) as broker:
                creds = broker.bind(srow.instance_id, binding, srow.service_id, srow.plan_id)
        except BrokerError as error:
            raise OsbError(502, f"{provider.name}: {error}") from None
        return {"endpoint": creds["endpoint"], "region": sub["region"],
                "access_key_id": creds["access_key_id"],
                "secret_access_key": creds["secret_access_key"],
                "provider": provider.name, "subscription_id": subscription_id,
                "_binding_id": binding}

    @router.get("/service_instances/{instance_id}/service_bindings/{binding_id}")
    def get_binding(instance_id: str, binding_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        _owned_instance(instance_id, who)
        with state.store.begin() as conn:
            row = conn.execute(select(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id,
                store.osb_bindings.c.binding_id == binding_id)).first()
        if row is None:
            raise OsbError(404, f"no binding {binding_id}")
        creds = json.loads(state.vault.open(row.credentials,
                                            f"osb-binding/{instance_id}/{binding_id}"))
        return _json(200, {"credentials": creds})

    @router.delete("/service_instances/{instance_id}/service_bindings/{binding_id}")
    def unbind(instance_id: str, binding_id: str, request: Request) -> JSONResponse:
        who = principal(request)
        row = _owned_instance(instance_id, who)
        with state.store.begin() as conn:
            binding = conn.execute(select(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id,
                store.osb_bindings.c.binding_id == binding_id)).first()
        if binding is None:
            return _json(410, {})
        sub = orders.get_subscription(state, who, row.subscription_id)
        _provider_unbind(sub, binding.provider_binding_id)
        with state.store.begin() as conn:
            conn.execute(delete(store.osb_bindings).where(
                store.osb_bindings.c.instance_id == instance_id,
                store.osb_bindings.c.binding_id == binding_id))
            record(conn, who, "osb.unbind", f"{instance_id}/{binding_id}")
        return _json(200, {})

    return router


def _plan_name(provider: str, plan: str) -> str:
    return f"{provider}-{plan}".replace("_", "-")[:63]


def _str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _dec(params: dict[str, Any], key: str, default: str) -> Decimal:
    value = Decimal(str(params.get(key, default)))
    if not value.is_finite() or value < 0:
        raise ValueError(f"{key} must be a finite number, not negative")
    return value


def _opt_dec(params: dict[str, Any], key: str) -> Decimal | None:
    return None if params.get(key) is None else _dec(params, key, "0")


def _parameter_schema() -> dict[str, Any]:
    number = {"type": ["number", "string"]}
    return {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
            "additionalProperties": False, "properties": {
                "region": {"type": "string"}, "jurisdiction": {"type": "string"},
                "min_level": {"enum": list(LEVELS)}, "currency": {"type": "string"},
                "max_price_gb_month": number, "max_price_egress_gb": number,
                "expect_gb": number, "expect_egress_gb": number,
                "expect_requests": {"type": "integer", "minimum": 0},
                "write_share": number}}


def osb_error_response(error: OsbError) -> JSONResponse:
    body: dict[str, Any] = {"description": error.description}
    if error.error:
        body["error"] = error.error
    headers = {"WWW-Authenticate": 'Basic realm="silverlining-market"'} \
        if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, headers=headers)
