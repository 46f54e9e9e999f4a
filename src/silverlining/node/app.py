"""ASGI wiring of a node: one port, requests routed by what they are.

Paths under ``/v2/`` go to the Open Service Broker API and under ``/federation/`` to the
federation API -- unless the request is signed S3 (SigV4 or SigV2, in a header or in the query
string), because ``v2`` and ``federation`` are valid bucket names. Everything else is S3 REST.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from silverlining.node.accesslog import AccessLog
from silverlining.node.protocol.broker import BrokerApp, FederationApp
from silverlining.node.protocol.s3.frontend import S3Front
from silverlining.node.runtime import Node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("silverlining.node")


class NodeApp:
    def __init__(self, node: Node, *, workers: int = 32, access_log: bool = True) -> None:
        self.node = node
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sl-io")
        self.access_log = AccessLog(enabled=access_log)
        self.s3 = S3Front(node, self.executor, self.access_log)
        timeout = node.config.body_timeout
        self.broker = BrokerApp(node.broker, self.executor, timeout, self.access_log)
        self.federation = FederationApp(node.broker, node.usage, self.executor, timeout,
                                        self.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith(_API_PREFIXES) and not _signed_s3(scope):
                app = self.broker if path.startswith("/v2/") else self.federation
                await app(scope, receive, send)
                return
            await self.s3(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=True)
                self.access_log.flush()
                self.node.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


_API_PREFIXES = ("/v2/", "/federation/")


def _signed_s3(scope: Scope) -> bool:
    """A SigV4/SigV2 header or presigned query: S3 addressing a bucket named like an API."""
    query: bytes = scope.get("query_string", b"")
    if b"X-Amz-Signature=" in query or b"AWSAccessKeyId=" in query:
        return True
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bool(value.startswith((b"AWS4-HMAC-SHA256", b"AWS ")))
    return False
