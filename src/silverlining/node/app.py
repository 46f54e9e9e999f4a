"""ASGI wiring of a node: one port, requests routed by what they are.

S3 REST is everything else than the (future) broker ``/v2/`` and federation paths.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from silverlining.node.protocol.s3.frontend import S3Front
from silverlining.node.runtime import Node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("silverlining.node")


class NodeApp:
    def __init__(self, node: Node, *, workers: int = 32) -> None:
        self.node = node
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sl-io")
        self.s3 = S3Front(node, self.executor)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
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
                self.node.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
