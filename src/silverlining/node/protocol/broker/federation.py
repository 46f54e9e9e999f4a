"""The federation API under ``/federation/``: what a market pulls from a provider node.

- ``GET /federation/identity`` (public: it only says who the node is): the node's Ed25519
  public key, software version and the Core level it claims.
- ``GET /federation/usage?instance_id=&since=&until=&limit=`` (broker credentials): usage
  records per service instance and metering period, signed by the node's key.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from silverlining import __version__
from silverlining.node.domain.broker import (
    BadRequest,
    BrokerService,
    MethodNotAllowed,
    NotFound,
    check_id,
)
from silverlining.node.domain.usage import (
    DEFAULT_LIMIT,
    USAGE_FORMAT,
    UsageService,
    now_ms,
    parse_moment,
)
from silverlining.node.protocol.broker.http import (
    AccessLogger,
    Handler,
    JsonApp,
    JsonRequest,
    JsonResponse,
)
from silverlining.node.protocol.broker.osb import check_credentials

MAX_LIMIT = 10_000


class FederationApp(JsonApp):
    name = "federation"

    def __init__(self, broker: BrokerService, usage: UsageService,
                 executor: ThreadPoolExecutor, body_timeout: float,
                 access_log: AccessLogger | None = None) -> None:
        super().__init__(executor, body_timeout, access_log)
        self.broker = broker
        self.usage = usage

    def route(self, req: JsonRequest) -> Handler:
        routes: dict[str, Handler] = {"identity": self.identity, "usage": self.get_usage}
        if len(req.segments) != 2 or req.segments[1] not in routes:
            return self.not_found
        if req.method != "GET":
            return self.not_allowed
        return routes[req.segments[1]]

    async def not_found(self, req: JsonRequest) -> JsonResponse:
        raise NotFound(f"no such federation resource: {req.path[:200]}")

    async def not_allowed(self, req: JsonRequest) -> JsonResponse:
        raise MethodNotAllowed(f"{req.method} is not supported here (use GET)", ("GET",))

    async def identity(self, req: JsonRequest) -> JsonResponse:
        offering = self.broker.offering
        state = await self.call(self.usage.state)
        body: dict[str, Any] = {
            "software": "silverlining",
            "version": __version__,
            "algorithm": "ed25519",
            "public_key": self.usage.identity.public_key,
            "fingerprint": self.usage.identity.fingerprint,
            "core_level_claimed": offering.core_level_claimed,
            "service_id": offering.service_id,
            "endpoint": offering.endpoint,
            "region": offering.region,
            "jurisdiction": offering.jurisdiction,
            "usage": {"format": USAGE_FORMAT,
                      "period_seconds": None if state is None else state.period_ms // 1000},
        }
        return JsonResponse(200, body)

    async def get_usage(self, req: JsonRequest) -> JsonResponse:
        await check_credentials(self, self.broker, req)  # no OSB version header here
        q = req.query
        unknown = set(q) - {"instance_id", "since", "until", "limit"}
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        instance_id = q.get("instance_id") or None
        if instance_id is not None:
            check_id(instance_id, "instance_id")
            if not await self.call(self.usage.instance_known, instance_id):
                raise NotFound(f"service instance {instance_id!r} is not known to this node")
        at = now_ms()
        until = _moment(q["until"], "until") if "until" in q else at
        since = _moment(q["since"], "since") if "since" in q else 0
        if since > until:
            raise BadRequest("since is after until")
        limit = DEFAULT_LIMIT
        if "limit" in q:
            if not q["limit"].isdigit() or not 1 <= int(q["limit"]) <= MAX_LIMIT:
                raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
            limit = int(q["limit"])
        page = await self.call(lambda: self.usage.instance_page(
            instance_id, since, until, limit=limit, at_ms=at))
        offering = self.broker.offering
        doc = await self.call(lambda: self.usage.signed_batch(
            page, instance_id=instance_id, since_ms=since, until_ms=until,
            service_id=offering.service_id, endpoint=offering.endpoint, at_ms=at))
        return JsonResponse(200, doc)


def _moment(text: str, name: str) -> int:
    try:
        return parse_moment(text)
    except ValueError:
        raise BadRequest(f"{name} must be ISO 8601 (2024-01-31T10:00:00Z) or seconds since "
                         "the epoch") from None
