"""The JSON-over-HTTP plumbing shared by the broker and federation APIs: one request in, one
JSON response out, every failure an OSB error body (``{"error", "description"}``) with its
status, never a traceback.

Bodies are small (OSB requests are a few hundred bytes): at most :data:`MAX_BODY` bytes are
read, and reading stalls are bounded, so a hostile client can neither exhaust memory nor hold
a worker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from silverlining.node.domain.broker import (
    BadRequest,
    BrokerError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

MAX_BODY = 64 * 1024
MAX_QUERY_FIELDS = 50
REALM = b'Basic realm="silverlining-broker", charset="UTF-8"'

log = logging.getLogger("silverlining.node.broker")


class AccessLogger(Protocol):
    """The node's access log (``node/accesslog.py``): one line per request."""

    def log(self, request_id: str, account: str, method: str, resource: str, status: int,
            millis: float) -> None: ...


class ClientGone(Exception):
    """The client disconnected before its request was read."""


@dataclass
class JsonRequest:
    method: str
    #: Path segments, each percent-decoded on its own (so an id may contain an encoded "/").
    segments: list[str]
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    receive: Receive
    body_timeout: float
    request_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())
    _body: bytes | None = None

    @classmethod
    def from_scope(cls, scope: Scope, receive: Receive, body_timeout: float) -> JsonRequest:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw = raw_path.decode("latin-1").split("?", 1)[0]
        try:
            segments = [urllib.parse.unquote(s, errors="strict") for s in raw.split("/")[1:]]
        except UnicodeDecodeError:
            raise BadRequest("the request path is not valid UTF-8") from None
        if segments and segments[-1] == "":
            segments.pop()  # tolerate one trailing slash
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            pairs = urllib.parse.parse_qsl(
                scope.get("query_string", b"").decode("utf-8"), keep_blank_values=True,
                strict_parsing=False, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the query string is not valid") from None
        query: dict[str, str] = {}
        for k, v in pairs:
            if k in query:
                raise BadRequest(f"the query parameter {k!r} is given more than once")
            query[k] = v
        return cls(scope["method"], segments, scope["path"], query, headers, receive,
                   body_timeout)

    @property
    def body_read(self) -> bool:
        return self._body is not None

    async def body(self) -> bytes:
        """The whole body (at most MAX_BODY bytes; more is 413)."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest("Content-Length is not a number")
            if int(declared) > MAX_BODY:
                raise PayloadTooLarge(f"the request body is larger than {MAX_BODY} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(self.receive(), self.body_timeout)
            except TimeoutError:
                raise BadRequest("the request body stalled") from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise PayloadTooLarge(f"the request body is larger than {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json_object(self) -> dict[str, Any]:
        """The body as a JSON object. OSB: "If a Service Broker rejects a request due to a
        mismatched Content-Type or the body is unprocessable it SHOULD respond with 400"."""
        ctype = self.headers.get("content-type")
        if ctype is not None and ctype.split(";")[0].strip().lower() != "application/json":
            await self.body()
            raise BadRequest(f"Content-Type must be application/json, not {ctype[:100]!r}")
        raw = await self.body()
        if not raw.strip():
            raise BadRequest("a JSON object body is required")
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8") from None
        except (json.JSONDecodeError, ValueError) as exc:
            raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
        except RecursionError:
            raise BadRequest("the body nests too deeply") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        value = self.query.get(name)
        if value is None or value == "false":
            return False
        if value == "true":
            return True
        raise BadRequest(f"{name} must be true or false")

    def basic_auth(self) -> tuple[str, str]:
        """(username, password) from ``Authorization: Basic``; 401 if absent or malformed."""
        header = self.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise Unauthorized("HTTP Basic authentication with the broker credentials is "
                               "required")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Unauthorized("the Basic credentials are not valid base64 UTF-8") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthorized("the Basic credentials have no ':'")
        return username, password


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


Handler = Callable[[JsonRequest], Awaitable["JsonResponse"]]


@dataclass
class JsonResponse:
    status: int
    body: Any
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class JsonApp:
    """A small ASGI app: (method, route) -> handler, JSON in and out, errors rendered."""

    name = "json"

    def __init__(self, executor: ThreadPoolExecutor, body_timeout: float,
                 access_log: AccessLogger | None = None) -> None:
        self.executor = executor
        self.body_timeout = body_timeout
        self.access_log = access_log

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, scrypt, file deletes) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def route(self, req: JsonRequest) -> Handler:  # pragma: no cover - overridden
        raise NotFound("no such resource")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        req: JsonRequest | None = None
        try:
            req = JsonRequest.from_scope(scope, receive, self.body_timeout)
            response = await self.route(req)(req)
        except ClientGone:
            return
        except BrokerError as exc:
            response = error_response(exc)
        except Exception:
            rid = req.request_id if req is not None else "-"
            log.exception("internal error serving %s %r (request %s)", scope.get("method"),
                          scope.get("path"), rid)
            response = error_response(BrokerError(f"internal error (request {rid})"))
        # Close when the body was refused unread (too large, or the request unparseable).
        close = response.status == 413 or req is None
        if req is not None and not req.body_read and not close:
            # Read what the handler did not (a small body, or an error before reading it), so
            # the connection is clean for the next request; if that fails, close it.
            try:
                await req.body()
            except ClientGone:
                return
            except BrokerError:
                close = True
        request_id = req.request_id if req is not None else secrets.token_hex(8).upper()
        await send_json(send, response, request_id,
                        None if req is None else req.headers.get("x-broker-api-request-identity"),
                        close=close)
        if self.access_log is not None:
            # Never the query string, headers or body: credentials and secrets live there.
            # The raw path, still percent-encoded: a decoded one could carry a line break.
            raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
            self.access_log.log(request_id, self.name, str(scope.get("method")),
                                raw.decode("latin-1")[:1024], response.status,
                                (time.perf_counter() - started) * 1000)


def error_response(exc: BrokerError) -> JsonResponse:
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", REALM))
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        headers.append((b"allow", ", ".join(exc.allow).encode()))
    return JsonResponse(exc.status, {"error": exc.error, "description": exc.description},
                        headers)


async def send_json(send: Send, response: JsonResponse, request_id: str,
                    broker_request_identity: str | None, *, close: bool = False) -> None:
    payload = json.dumps(response.body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode()),
               (b"x-request-id", request_id.encode()), *response.headers]
    if broker_request_identity:
        # OSB: "The Service Broker SHOULD include this header in the response".
        headers.append((b"x-broker-api-request-identity",
                        broker_request_identity[:256].encode("latin-1", "replace")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
