"""The one benchmark client: asyncio + aiohttp with keep-alive, path-style S3 requests signed
with botocore's SigV4 signer.

Payload mode: every request carries the SHA-256 of its body in ``x-amz-content-sha256`` and
that digest is part of the signature. That is what boto3 and the aws CLI send to an
``http://`` endpoint (botocore only switches to UNSIGNED-PAYLOAD over TLS), so it is the
traffic a provider node really sees on plain HTTP, and it is the strictest mode for a server
that verifies signatures: it must hash every body it receives. moto and LocalStack check
nothing; the same bytes go to every server. The digest of a large body is computed once
(outside the timing) and reused; the signature itself is computed per request.
``sign_payload=False`` sends UNSIGNED-PAYLOAD instead (what boto3 does over TLS), to measure
what verifying the payload hash costs a server.

Bodies larger than one piece go out as a stream of uncopied 1 MiB views with an explicit
Content-Length (no chunked encoding: the bytes on the wire are those of a plain PUT). Handed
a 64 MiB ``bytes``, aiohttp on Python 3.11 joins it to the head (a 64 MiB copy), asyncio's
transport copies the unsent rest into its buffer twice, and every copy is a fresh mmap whose
pages fault in: measured against a null server, that client spent 1.4-1.5 CPU-s per GiB sent
and topped out at ~700 MiB/s, and on a 2-core machine that CPU was taken from the server
being measured. Streaming views, the same client sends at ~4 GiB/s for ~0.25 CPU-s per GiB.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PIECE = 1 << 20  # bodies above this are streamed as views of this size


class BenchError(Exception):
    """A server answered something other than what the workload expects."""


@dataclass(frozen=True)
class Fingerprint:
    """What a GET must give back: the length and CRC-32 of the body that was PUT.

    CRC-32 (zlib, ~7 GB/s) rather than SHA-256 (~2 GB/s here): at nginx speeds a SHA-256 of
    every downloaded byte would cost the single-threaded client a large share of a core and
    flatten the differences the large-GET figure is meant to show. The bodies are random, so
    a wrong, short, stale or mixed-up body is caught with probability 1 - 2**-32.
    """

    length: int
    crc32: int

    @classmethod
    def of(cls, body: bytes) -> Fingerprint:
        return cls(len(body), zlib.crc32(body))


@dataclass(frozen=True)
class Payload:
    """A request body and the SHA-256 the signature commits to."""

    body: bytes
    sha256: str
    fingerprint: Fingerprint

    @classmethod
    def of(cls, body: bytes) -> Payload:
        return cls(body, hashlib.sha256(body).hexdigest(), Fingerprint.of(body))


class _PrehashedS3SigV4Auth(S3SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's S3 signer, taking the payload digest from the request context instead of
    hashing the body again (the digest of a 64 MiB body is computed once per body)."""

    def payload(self, request: AWSRequest) -> str:
        digest: str = request.context["payload_sha256"]
        return digest


def quote_key(key: str) -> str:
    return quote(key, safe="/-_.~")


class S3Client:
    """Signed path-style S3 requests over one keep-alive aiohttp session."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        connections: int = 64,
        request_timeout: float = 120.0,
        sign_payload: bool = True,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.sign_payload = sign_payload
        self._host = URL(self.endpoint).raw_authority
        self._credentials = Credentials(access_key, secret_key)
        self._auth = _PrehashedS3SigV4Auth(self._credentials, "s3", REGION)
        connector = aiohttp.TCPConnector(
            limit=connections, limit_per_host=connections, keepalive_timeout=60
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=request_timeout),
            skip_auto_headers=("Accept-Encoding",),
            auto_decompress=False,
            read_bufsize=1 << 20,
        )

    async def close(self) -> None:
        await self.session.close()

    # --- signing -------------------------------------------------------------------------
    def signed(
        self, method: str, path: str, payload_sha256: str = EMPTY_SHA256
    ) -> tuple[URL, dict[str, str]]:
        """The URL (already encoded, exactly as signed) and the signed headers."""
        url = self.endpoint + path
        # Host given up front saves botocore re-parsing the URL for it on every request;
        # aiohttp sends the same value, so it is dropped from the headers passed on.
        request = AWSRequest(method=method, url=url, headers={"host": self._host})
        request.context["payload_sha256"] = payload_sha256
        self._auth.add_auth(request)
        headers = {k: v for k, v in request.headers.items() if k != "host"}
        return URL(url, encoded=True), headers

    def presigned_get(self, path: str, expires: int = 3600) -> str:
        """A query-signed GET URL, for clients that cannot sign (wrk)."""
        request = AWSRequest(method="GET", url=self.endpoint + path, headers={})
        S3SigV4QueryAuth(self._credentials, "s3", REGION, expires=expires).add_auth(request)
        url: str = request.url
        return url

    # --- operations ----------------------------------------------------------------------
    async def create_bucket(self, bucket: str) -> None:
        url, headers = self.signed("PUT", f"/{bucket}")
        async with self.session.put(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200 and b"BucketAlreadyOwnedByYou" not in body:
                raise BenchError(f"CreateBucket {bucket}: {resp.status} {body[:300]!r}")

    async def list_buckets(self) -> int:
        url, headers = self.signed("GET", "/")
        async with self.session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def put(self, bucket: str, key: str, payload: Payload) -> None:
        digest = payload.sha256 if self.sign_payload else UNSIGNED_PAYLOAD
        url, headers = self.signed("PUT", f"/{bucket}/{quote_key(key)}", digest)
        data: bytes | AsyncIterator[memoryview] = payload.body
        if len(payload.body) > PIECE:
            headers["Content-Length"] = str(len(payload.body))
            data = _pieces(payload.body)
        async with self.session.put(url, headers=headers, data=data) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"PUT {key}: {resp.status} {body[:300]!r}")

    async def get(self, bucket: str, key: str, expected: Fingerprint) -> int:
        """GET and check the body against its fingerprint; return the bytes read."""
        url, headers = self.signed("GET", f"/{bucket}/{quote_key(key)}")
        async with self.session.get(url, headers=headers) as resp:
            if resp.status != 200:
                body = await resp.read()
                raise BenchError(f"GET {key}: {resp.status} {body[:300]!r}")
            length = 0
            crc = 0
            async for chunk in resp.content.iter_any():
                length += len(chunk)
                crc = zlib.crc32(chunk, crc)
        got = Fingerprint(length, crc)
        if got != expected:
            raise BenchError(f"GET {key}: body mismatch: got {got}, expected {expected}")
        return length

    async def head(self, bucket: str, key: str, expected_length: int | None) -> int:
        """HEAD; with an expected length, require 200 and that Content-Length. Returns status."""
        url, headers = self.signed("HEAD", f"/{bucket}/{quote_key(key)}")
        async with self.session.head(url, headers=headers) as resp:
            await resp.read()
            if expected_length is not None:
                if resp.status != 200:
                    raise BenchError(f"HEAD {key}: {resp.status}")
                if resp.content_length != expected_length:
                    raise BenchError(
                        f"HEAD {key}: Content-Length {resp.content_length}, "
                        f"expected {expected_length}"
                    )
            return resp.status

    async def delete(self, bucket: str, key: str) -> None:
        url, headers = self.signed("DELETE", f"/{bucket}/{quote_key(key)}")
        async with self.session.delete(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 204:
                raise BenchError(f"DELETE {key}: {resp.status} {body[:300]!r}")

    async def list_all(self, bucket: str, page_size: int = 1000) -> list[str]:
        """Every key of the bucket through ListObjectsV2 pages, in the order returned."""
        keys: list[str] = []
        token: str | None = None
        for _ in range(100_000):  # bounded: 100 million keys at most
            query = f"list-type=2&max-keys={page_size}"
            if token is not None:
                query = f"continuation-token={quote(token, safe='-_.~')}&{query}"
            url, headers = self.signed("GET", f"/{bucket}?{query}")
            async with self.session.get(url, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise BenchError(f"ListObjectsV2: {resp.status} {body[:300]!r}")
            page, token = _parse_list_page(body)
            keys.extend(page)
            if token is None:
                return keys
        raise BenchError("ListObjectsV2: too many pages")


async def _pieces(body: bytes) -> AsyncIterator[memoryview]:
    """The body as views of PIECE bytes each: nothing is copied before the socket."""
    view = memoryview(body)
    for start in range(0, len(view), PIECE):
        yield view[start : start + PIECE]


def _parse_list_page(body: bytes) -> tuple[list[str], str | None]:
    root = ET.fromstring(body)  # noqa: S314 - our own loopback servers' answers
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    keys = [el.text or "" for el in root.iterfind(f"{ns}Contents/{ns}Key")]
    truncated = (root.findtext(f"{ns}IsTruncated") or "false").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    if truncated and not token:
        raise BenchError("ListObjectsV2: IsTruncated without NextContinuationToken")
    return keys, token


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, BenchError) else f"{type(exc).__name__}: {text}"


JSONDict = dict[str, Any]
