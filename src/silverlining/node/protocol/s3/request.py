"""An authenticated S3 request as handlers see it, and what they answer."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from silverlining.node import errors
from silverlining.node.domain.conditions import Conditions
from silverlining.node.domain.model import Account
from silverlining.node.domain.streams import ObjectReader
from silverlining.node.protocol.s3.body import RequestBody
from silverlining.node.protocol.s3.serializer import S3Serializer
from silverlining.node.protocol.sigv4 import Authenticated
from silverlining.node.runtime import Node

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    #: Streamed after the headers (GetObject); closed by the front when done.
    stream: ObjectReader | None = None
    #: Blocking clean-up run in the thread pool once the response has been sent (freeing
    #: a replaced object's blobs): work the client need not wait for.
    after: Callable[[], object] | None = None


@dataclass(slots=True)
class S3Request:
    node: Node
    serializer: S3Serializer
    executor: ThreadPoolExecutor
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    account: Account
    auth: Authenticated
    body: RequestBody
    request_id: str

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking storage work (fsync, hashing, SQL writes) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    def render(self, operation: str, result: dict[str, Any]) -> Response:
        r = self.serializer.render(operation, result)
        return Response(r.status, r.headers, r.body)

    def int_param(self, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise errors.InvalidArgument(
                f"Provided {name} not an integer or within integer range",
                ArgumentName=name, ArgumentValue=raw,
            ) from None
        if value < low:
            raise errors.InvalidArgument(
                f"Argument {name} must be an integer between {low} and 2147483647",
                ArgumentName=name, ArgumentValue=raw,
            )
        return value if high is None else min(value, high)

    def conditions(self, prefix: str = "") -> Conditions:
        h = self.headers
        return Conditions(
            if_match=h.get(f"{prefix}if-match"),
            if_none_match=h.get(f"{prefix}if-none-match"),
            if_modified_since=http_date(h.get(f"{prefix}if-modified-since")),
            if_unmodified_since=http_date(h.get(f"{prefix}if-unmodified-since")),
        )


def http_date(value: str | None) -> float | None:
    """An HTTP date as epoch seconds; None when absent or unparseable (then ignored, per
    RFC 9110)."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp()
