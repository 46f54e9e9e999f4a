"""Request bodies: Content-Length framing, aws-chunked decoding, declared checksums.

:class:`RequestBody` yields the decoded payload in pieces; it never holds more than one
piece. The node writes object bodies straight to a blob (see ``handlers/objects.py``) and
reads small XML bodies whole, up to a limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from silverlining.node import errors
from silverlining.node.domain.checksums import ALGORITHMS, new_hasher, normalize_algorithm
from silverlining.node.protocol.aws_chunked import AwsChunkedDecoder
from silverlining.node.protocol.sigv4 import Authenticated

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

_CHECKSUM_HEADERS = {f"x-amz-checksum-{a.lower()}": a for a in ALGORITHMS}


class ClientDisconnected(Exception):
    """The client went away mid-body; there is nobody to answer."""


class ChecksumSpec:
    """Which flexible checksum a request declares, and where its value comes from."""

    __slots__ = ("algorithm", "in_trailer", "value")

    def __init__(self, algorithm: str | None, value: str | None, in_trailer: bool) -> None:
        self.algorithm = algorithm
        self.value = value
        self.in_trailer = in_trailer

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> ChecksumSpec:
        found = [(h, a) for h, a in _CHECKSUM_HEADERS.items() if h in headers]
        for h in headers:
            if h.startswith("x-amz-checksum-") and h not in _CHECKSUM_HEADERS and h not in (
                "x-amz-checksum-type", "x-amz-checksum-algorithm", "x-amz-checksum-mode"
            ):  # an algorithm we know but do not compute: 501, not a silent skip
                normalize_algorithm(h[len("x-amz-checksum-"):])  # 501 for known-unsupported
        if len(found) > 1:
            raise errors.InvalidRequest("Expecting a single x-amz-checksum- header. Multiple "
                                        "checksum Types are not allowed.")
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        sdk_alg = headers.get("x-amz-sdk-checksum-algorithm")
        if found:
            header, alg = found[0]
            value = headers[header].strip()
            _check_b64(alg, value)
            return cls(alg, value, False)
        if trailer:
            if trailer not in _CHECKSUM_HEADERS:
                if trailer.startswith("x-amz-checksum-"):
                    normalize_algorithm(trailer[len("x-amz-checksum-"):])
                raise errors.InvalidRequest(f"The value specified in the x-amz-trailer header "
                                            f"is not supported: {trailer}")
            return cls(_CHECKSUM_HEADERS[trailer], None, True)
        if sdk_alg:
            return cls(normalize_algorithm(sdk_alg), None, False)
        return cls(None, None, False)

    def resolve(self, trailers: dict[str, str]) -> str | None:
        """The expected value, once the body (and its trailers) has been read."""
        if not self.in_trailer:
            return self.value
        assert self.algorithm is not None
        value = trailers.get(f"x-amz-checksum-{self.algorithm.lower()}")
        if value is None:
            raise errors.InvalidRequest(
                f"x-amz-trailer declared x-amz-checksum-{self.algorithm.lower()} but the body "
                "did not carry it."
            )
        _check_b64(self.algorithm, value)
        return value


_DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "SHA1": 20, "SHA256": 32}


def _check_b64(alg: str, value: str) -> None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _DIGEST_SIZES[alg]:
        raise errors.InvalidRequest(f"Value for x-amz-checksum-{alg.lower()} header is invalid.")


class RequestBody:
    """The payload of one request, as the client meant it (aws-chunked framing removed)."""

    def __init__(self, receive: Receive, headers: dict[str, str], auth: Authenticated,
                 *, idle_timeout: float = 30.0) -> None:
        self._receive = receive
        self._idle_timeout = idle_timeout
        self._expect_continue = headers.get("expect", "").lower() == "100-continue"
        self.auth = auth
        self.trailers: dict[str, str] = {}
        self._consumed = False
        #: The whole payload has been read (and, aws-chunked, its trailers verified).
        self.exhausted = False
        #: Wire bytes received so far, and whether the wire may carry more.
        self._wire_received = 0
        self._wire_more = True
        #: Payload bytes received so far (decoded: what the client meant to send).
        self.received = 0
        cl = headers.get("content-length")
        self.wire_length: int | None
        if cl is None:
            if "transfer-encoding" not in headers:
                self.wire_length = 0
            elif auth.streaming:
                # boto3 over TLS: HTTP chunked around an aws-chunked body, no Content-Length.
                self.wire_length = None
            else:
                raise errors.MissingContentLength()
        else:
            try:
                self.wire_length = int(cl)
            except ValueError:
                raise errors.InvalidArgument("Content-Length is not a number",
                                             ArgumentName="Content-Length") from None
            if self.wire_length < 0:
                raise errors.InvalidArgument("Content-Length is negative",
                                             ArgumentName="Content-Length")
        self._decoder: AwsChunkedDecoder | None = None
        self.length: int | None = self.wire_length
        if auth.streaming:
            dcl = headers.get("x-amz-decoded-content-length")
            if dcl is None and self.wire_length is not None:
                raise errors.MissingContentLength(
                    "aws-chunked uploads must declare x-amz-decoded-content-length."
                )
            if dcl is not None and not dcl.isdigit():
                raise errors.InvalidArgument("x-amz-decoded-content-length is not a number",
                                             ArgumentName="x-amz-decoded-content-length")
            self.length = int(dcl) if dcl is not None else None
            self._decoder = AwsChunkedDecoder(auth.chunk_signing, trailer=auth.expects_trailer)

    async def _wire_batch(self, want: int) -> list[bytes]:
        """The next wire bytes, as received: at least ``want`` of them unless the body ends
        sooner (``[]`` at the end). Checks them against Content-Length."""
        if not self._wire_more:
            return []
        limit = self.wire_length
        if limit == 0:
            self._wire_more = False
            if self._expect_continue:
                # Answer "100 Continue" even for an empty body (uvicorn sends it on the first
                # receive): aws CLI v1's botocore otherwise mistakes the final response of
                # this request for the interim one of the next (boto/botocore#3755) and
                # stalls.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._receive(), self._idle_timeout)
            return []
        # uvicorn hands the body over in messages of up to ~64 KiB-256 KiB (it stops reading
        # the socket past 64 KiB unread): gather them, uncopied, into one batch.
        pieces: list[bytes] = []
        size = 0
        more = True
        while more and size < want:
            try:
                message = await asyncio.wait_for(self._receive(), self._idle_timeout)
            except TimeoutError:
                raise errors.RequestTimeout() from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                pieces.append(chunk)
                size += len(chunk)
        self._wire_received += sum(map(len, pieces))
        self._wire_more = more
        if limit is not None and self._wire_received > limit:
            raise errors.IncompleteBody("The body is longer than its Content-Length.")
        if not more and limit is not None and self._wire_received < limit:
            raise errors.IncompleteBody()
        return pieces

    async def next_batch(self, want: int) -> list[bytes]:
        """The next pieces of the decoded payload, at least ``want`` bytes in all unless the
        payload ends sooner; ``[]`` at the end. After the last batch ``exhausted`` is true
        (and ``trailers`` are set): a caller can tell the last batch without another read."""
        self._consumed = True
        out: list[bytes] = []
        got = 0
        decoder = self._decoder
        while got < want and not self.exhausted:
            raw = await self._wire_batch(want - got)
            if decoder is None:
                pieces = raw
            else:
                pieces = []
                for piece in raw:
                    data = decoder.feed(piece)
                    if data:
                        pieces.append(data)
            for data in pieces:
                got += len(data)
            out += pieces
            if not self._wire_more:
                if decoder is not None:
                    self.trailers = decoder.finish()
                self.exhausted = True
        total = self.received + got
        self.received = total
        if self.length is not None:
            if total > self.length:
                raise errors.IncompleteBody(
                    "The decoded body is longer than x-amz-decoded-content-length."
                )
            if self.exhausted and decoder is not None and total != self.length:
                raise errors.IncompleteBody(
                    "The decoded body does not match x-amz-decoded-content-length."
                )
        return out

    async def chunks(self) -> AsyncIterator[bytes]:
        """The decoded payload, piece by piece. May be iterated once."""
        if self._consumed:
            raise RuntimeError("request body already consumed")
        while not self.exhausted:
            for data in await self.next_batch(1):
                yield data

    async def read_all(self, limit: int, headers: dict[str, str]) -> bytes:
        """The whole payload (for XML bodies), checked against every digest the request
        declares: the signed SHA-256, Content-MD5 and a flexible checksum."""
        if self.length is not None and self.length > limit:
            raise errors.MaxMessageLengthExceeded(
                f"Your request was too big: {self.length} bytes, the limit is {limit}."
            )
        spec = ChecksumSpec.from_headers(headers)
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise errors.MaxMessageLengthExceeded()
            parts.append(chunk)
        body = b"".join(parts)
        signed = self.auth.content_sha256
        if signed is not None and hashlib.sha256(body).hexdigest() != signed.lower():
            raise errors.XAmzContentSHA256Mismatch()
        md5 = headers.get("content-md5")
        if md5 is not None:
            try:
                declared = base64.b64decode(md5, validate=True)
            except (binascii.Error, ValueError):
                raise errors.InvalidDigest() from None
            if declared != hashlib.md5(body).digest():
                raise errors.BadDigest()
        expected = spec.resolve(self.trailers) if spec.algorithm else None
        if spec.algorithm and expected is not None:
            h = new_hasher(spec.algorithm)
            h.update(body)
            if base64.b64encode(h.digest()).decode() != expected:
                raise errors.BadDigest(
                    f"The {spec.algorithm} you specified did not match the calculated checksum."
                )
        return body

    async def drain(self) -> None:
        """Read and drop whatever is left (so the connection can be reused)."""
        if not self._consumed:
            self._consumed = True
            while await self._wire_batch(1 << 20):
                pass
