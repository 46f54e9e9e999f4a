"""A small HTTP proxy that makes an honest S3 endpoint misbehave in chosen ways.

It forwards every request unchanged (Host header included, so signatures still verify
upstream) and streams bodies both ways, except where a fault needs to rewrite a response.
Core must catch each fault with a failed check and useful evidence.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 1024 * 1024

#: Faults the proxy can inject.
REVERSE_LISTING = "reverse-listing"  # <Contents> of listings in reverse order
DROP_ETAG = "drop-etag"  # no ETag header on any response
FLIP_RANGE_BYTE = "flip-range-byte"  # the first byte of every 206 body altered
FAIL_PROVISION = "fail-provision"  # OSB provisions (PUT /v2/service_instances/ID) answer 500
TAMPER_USAGE = "tamper-usage"  # signed usage batches: the first requests_read count raised
FAULTS = frozenset({REVERSE_LISTING, DROP_ETAG, FLIP_RANGE_BYTE, FAIL_PROVISION, TAMPER_USAGE})
_READS = re.compile(rb'("requests_read":\s*")(\d+)"')
_PROVISION = re.compile(r"^/v2/service_instances/[^/?]+(\?.*)?$")

_CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.DOTALL)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def reverse_contents(body: bytes) -> bytes:
    """``body`` with its ``<Contents>`` elements in reverse order, all else in place."""
    blocks = _CONTENTS.findall(body)
    if len(blocks) < 2:
        return body
    pieces = _CONTENTS.split(body)
    out = bytearray(pieces[0])
    for block, rest in zip(reversed(blocks), pieces[1:], strict=True):
        out += block + rest
    return bytes(out)


class FaultProxy:
    """``with FaultProxy(upstream) as proxy:`` then point clients at ``proxy.endpoint``."""

    def __init__(self, upstream: str, faults: frozenset[str] = frozenset()) -> None:
        unknown = set(faults) - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults = set(faults)
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.requests += 1
                if (FAIL_PROVISION in proxy.faults and self.command == "PUT"
                        and _PROVISION.match(self.path)):
                    body = b'{"description": "injected failure: the broker is broken"}'
                    self.send_response_only(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self.wfile.write(body)
                    return
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.send_error(501, "the fault proxy does not forward chunked requests")
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=120
                )
                try:
                    upstream.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP_BY_HOP:
                            upstream.putheader(name, value)
                    upstream.endheaders()
                    remaining = int(self.headers.get("Content-Length") or 0)
                    while remaining > 0:
                        chunk = self.rfile.read(min(CHUNK, remaining))
                        if not chunk:
                            break
                        upstream.send(chunk)
                        remaining -= len(chunk)
                    response = upstream.getresponse()
                    self._relay(response)
                finally:
                    upstream.close()

            def _relay(self, response: http.client.HTTPResponse) -> None:
                headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                if DROP_ETAG in proxy.faults:
                    headers = [(k, v) for k, v in headers if k.lower() != "etag"]
                no_body = self.command == "HEAD" or response.status in (204, 304)
                rewrite = not no_body and (
                    (REVERSE_LISTING in proxy.faults and self.command == "GET")
                    or (FLIP_RANGE_BYTE in proxy.faults and response.status == 206)
                    or (TAMPER_USAGE in proxy.faults and self.path.startswith("/federation/usage"))
                )
                length = response.getheader("Content-Length")
                if no_body:
                    self._head(response, headers)
                    return
                if rewrite or length is None:
                    body = response.read()
                    if REVERSE_LISTING in proxy.faults and b"<ListBucketResult" in body[:300]:
                        body = reverse_contents(body)
                    if TAMPER_USAGE in proxy.faults and self.path.startswith("/federation/usage"):
                        body = _READS.sub(
                            lambda m: m.group(1) + str(int(m.group(2)) + 1000).encode() + b'"',
                            body, count=1)
                    if FLIP_RANGE_BYTE in proxy.faults and response.status == 206 and body:
                        body = bytes([body[0] ^ 0xFF]) + body[1:]
                    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                    headers.append(("Content-Length", str(len(body))))
                    self._head(response, headers)
                    self.wfile.write(body)
                    return
                self._head(response, headers)
                while chunk := response.read(CHUNK):
                    self.wfile.write(chunk)

            def _head(
                self, response: http.client.HTTPResponse, headers: list[tuple[str, str]]
            ) -> None:
                self.send_response_only(response.status, response.reason)
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
