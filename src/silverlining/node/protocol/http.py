"""The HTTP/1.1 connection: uvicorn's httptools protocol with the limits a public S3
endpoint needs, and S3-shaped answers even for requests that never reach the app.

- Requests that are not valid HTTP get S3's ``400 BadRequest`` error XML, not plain text.
- The request line and headers are bounded (``RequestHeaderSectionTooLarge``).
- Slow clients cannot hold connections: the request line and headers must arrive within
  ``header_timeout`` of the first byte (or of the connection opening); a request that
  starts and stalls gets ``400 RequestTimeout`` and the connection is closed. Body stalls
  are bounded by the app (see ``protocol/s3/body.py``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from silverlining.node.protocol.s3.serializer import error_xml

MAX_URL_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 256
HEADER_TIMEOUT = 20.0


class S3HttpProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT

    @classmethod
    def with_timeout(cls, header_timeout: float) -> type[S3HttpProtocol]:
        return type(cls.__name__, (cls,), {"header_timeout": header_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_count = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._pending_reject: bytes | None = None

    # -- timers ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = _CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._reject(400, "RequestTimeout",
                         "Your socket connection to the server was not read from or written to "
                         "within the timeout period.")
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()  # idle connection that never sent a request

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._reject(400, "InvalidURI", "The request URI is too long.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            self._reject(400, "RequestHeaderSectionTooLarge",
                         "Your request header section exceeds the maximum allowed size.")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self._pending_reject is not None:
            # a pipelined request after this one was malformed: answer it now, in order
            self.transport.write(self._pending_reject)
            self.transport.close()
            return
        super().on_response_complete()
        # uvicorn arms its keep-alive timer here; our header timer starts with the next
        # request's first byte.

    # -- answers ---------------------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        self._reject(400, "BadRequest", "An error occurred when parsing the HTTP request.")

    def _reject(self, status: int, code: str, message: str) -> None:
        if self.transport.is_closing() or self._pending_reject is not None:
            return
        request_id = secrets.token_hex(8).upper()
        body = error_xml(code, message, "", request_id, {})
        head = (
            f"HTTP/1.1 {status} Bad Request\r\n"
            "content-type: application/xml\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-amz-request-id: {request_id}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        # Stop parsing what remains of this connection's input.
        self.parser = _Discard()  # type: ignore[assignment]
        if self.cycle is not None and not self.cycle.response_complete:
            # The request before this one is still being answered; answer after it.
            self._pending_reject = head + body
            return
        self.transport.write(head + body)
        self.transport.close()


class _Discard:
    """Stands in for the parser after a connection has been rejected."""

    def feed_data(self, data: bytes) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class _CoalescingTransport:
    """Joins the writes made in one event-loop iteration into one ``send``.

    uvicorn writes a response's head and its body separately; for a small object that is two
    system calls and two TCP segments where one does (py-spy showed the writes as the largest
    single cost of a 4 KiB GET). Writes are queued and flushed at the end of the iteration,
    or at once past 64 KiB, so large bodies are never held or copied.
    """

    _FLUSH_AT = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending and len(data) >= self._FLUSH_AT:
            self._transport.write(data)
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self._FLUSH_AT:
            self._flush()
        elif len(self._pending) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending = []
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
