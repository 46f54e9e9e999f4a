"""The Open Service Broker API v2.17 under ``/v2/``: routes, headers, auth; the semantics are
in ``domain/broker.py``.

Every request must carry ``X-Broker-API-Version`` (2.13 up to 2.x; 412 otherwise: "the
Service Broker MAY reject the request with 412 Precondition Failed and provide a message that
informs the operator of the API version that is to be used instead") and the broker's HTTP
Basic credentials (401 with ``WWW-Authenticate`` otherwise: the spec's "MUST return a 401
Unauthorized response if the authentication fails"). Credentials are checked first, so an
unauthenticated client learns nothing about the API.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from silverlining.node.domain.broker import (
    MIN_API_VERSION,
    BrokerService,
    MethodNotAllowed,
    NotFound,
    Outcome,
    PreconditionFailed,
    Unauthorized,
)
from silverlining.node.protocol.broker.http import (
    AccessLogger,
    Handler,
    JsonApp,
    JsonRequest,
    JsonResponse,
)

_VERSION = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\s*$")


class BrokerApp(JsonApp):
    name = "broker"

    def __init__(self, broker: BrokerService, executor: ThreadPoolExecutor,
                 body_timeout: float, access_log: AccessLogger | None = None) -> None:
        super().__init__(executor, body_timeout, access_log)
        self.broker = broker

    def route(self, req: JsonRequest) -> Handler:
        s = req.segments
        n = len(s)
        table: dict[str, Handler]
        if n == 2 and s[1] == "catalog":
            table = {"GET": self.get_catalog}
        elif n == 3 and s[1] == "service_instances":
            table = {"PUT": self.provision, "GET": self.get_instance, "PATCH": self.update,
                     "DELETE": self.deprovision}
        elif n == 4 and s[1] == "service_instances" and s[3] == "last_operation":
            table = {"GET": self.last_operation}
        elif n == 5 and s[1] == "service_instances" and s[3] == "service_bindings":
            table = {"PUT": self.bind, "GET": self.get_binding, "DELETE": self.unbind}
        elif (n == 6 and s[1] == "service_instances" and s[3] == "service_bindings"
              and s[5] == "last_operation"):
            table = {"GET": self.binding_last_operation}
        else:
            return self.not_found
        handler = table.get(req.method)
        if handler is None:
            allow = tuple(table)

            async def not_allowed(r: JsonRequest) -> JsonResponse:
                await self.authenticate(r)
                raise MethodNotAllowed(f"{r.method} is not supported here (use "
                                       f"{', '.join(allow)})", allow)

            return not_allowed
        return handler

    async def authenticate(self, req: JsonRequest) -> None:
        await check_credentials(self, self.broker, req)
        version = req.headers.get("x-broker-api-version")
        wanted = ".".join(map(str, MIN_API_VERSION))
        if version is None:
            raise PreconditionFailed(f"the X-Broker-API-Version header is required (this "
                                     f"broker speaks {wanted} to 2.17)")
        m = _VERSION.match(version)
        if m is None or int(m[1]) != 2 or (int(m[1]), int(m[2])) < MIN_API_VERSION:
            raise PreconditionFailed(f"X-Broker-API-Version {version[:20]!r} is not supported; "
                                     f"use a 2.x version from {wanted} (2.17 preferred)")

    # handlers ----------------------------------------------------------------------------
    async def not_found(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        raise NotFound(f"no such broker resource: {req.path[:200]}")

    async def get_catalog(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        return JsonResponse(200, self.broker.offering.catalog())

    async def provision(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        req.flag("accepts_incomplete")  # provisioning is always synchronous
        body = await req.json_object()
        return _outcome(await self.call(self.broker.provision, req.segments[2], body))

    async def get_instance(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        return JsonResponse(200, await self.call(self.broker.get_instance, req.segments[2]))

    async def update(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        req.flag("accepts_incomplete")  # plan changes are always synchronous
        body = await req.json_object()
        return _outcome(await self.call(self.broker.update, req.segments[2], body))

    async def deprovision(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        accepts = req.flag("accepts_incomplete")
        return _outcome(await self.call(self.broker.deprovision, req.segments[2], req.query,
                                        accepts))

    async def last_operation(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        state = await self.call(self.broker.last_operation, req.segments[2],
                                req.query.get("operation"))
        # OSB: "The response MAY also include the Retry-After HTTP header".
        headers = [(b"retry-after", b"1")] if state["state"] == "in progress" else []
        return JsonResponse(200, state, headers)

    async def bind(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        req.flag("accepts_incomplete")  # binding is always synchronous
        body = await req.json_object()
        return _outcome(await self.call(self.broker.bind, req.segments[2], req.segments[4],
                                        body))

    async def get_binding(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        return JsonResponse(200, await self.call(self.broker.get_binding, req.segments[2],
                                                 req.segments[4]))

    async def unbind(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        req.flag("accepts_incomplete")
        return _outcome(await self.call(self.broker.unbind, req.segments[2], req.segments[4],
                                        req.query))

    async def binding_last_operation(self, req: JsonRequest) -> JsonResponse:
        await self.authenticate(req)
        return JsonResponse(200, await self.call(self.broker.binding_last_operation,
                                                 req.segments[2], req.segments[4]))


async def check_credentials(app: JsonApp, broker: BrokerService, req: JsonRequest) -> None:
    """HTTP Basic with the broker credentials, or 401 (shared with the federation API)."""
    username, password = req.basic_auth()
    if not await app.call(broker.auth.verify, username, password):
        if not await app.call(broker.auth.configured):
            raise Unauthorized("this node has no broker credentials yet; its operator sets "
                               "them with `silverlining broker set-credentials`")
        raise Unauthorized("the broker credentials are not valid")


def _outcome(outcome: Outcome) -> JsonResponse:
    if outcome.operation is not None:
        return JsonResponse(202, outcome.body)
    return JsonResponse(201 if outcome.created else 200, outcome.body)
