"""Raw HTTP for checks where the exact bytes on the wire matter.

boto3 is the right client for most checks, but it will not send a tampered signature, a
request dated twenty minutes ago, or a hand-framed aws-chunked body. Here requests are signed
with botocore's own SigV4 implementation (so Core and the clients it stands for agree on the
maths) at a chosen time, then sent with :mod:`http.client`, which adds nothing we did not ask
for beyond ``Host`` and ``Accept-Encoding``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from defusedxml import ElementTree

from silverlining.core.evidence import record_request, show_bytes

SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Credentials:
    """An access key pair. ``repr`` hides the secret."""

    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class RawResponse:
    """A complete HTTP response (bodies here are small: errors and test objects)."""

    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def error_code(self) -> str | None:
        """The ``<Code>`` of an S3 error body, if there is one."""
        if not self.body.lstrip().startswith(b"<"):
            return None
        try:
            root = ElementTree.fromstring(self.body)
        except Exception:  # malformed XML is evidence, not a crash
            return None
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == "Code":
                return (element.text or "").strip()
        return None

    def describe(self) -> str:
        """``HTTP 403 SignatureDoesNotMatch`` or ``HTTP 200 (12 bytes)``: one line for evidence."""
        code = self.error_code
        if code:
            return f"HTTP {self.status} {code}"
        return f"HTTP {self.status} ({show_bytes(self.body)})"


def object_path(bucket: str, key: str | None = None) -> str:
    """The path-style URL path of a bucket or object, percent-encoded as S3 expects."""
    if key is None:
        return f"/{bucket}"
    return f"/{bucket}/{quote(key, safe='/~')}"


def object_url(endpoint: str, bucket: str, key: str | None = None, query: str = "") -> str:
    """A path-style URL of a bucket or object under ``endpoint``.

    Raw checks always use path-style addressing: it needs no DNS set-up, and what they test
    (signatures, framing) does not depend on the addressing style.
    """
    url = endpoint.rstrip("/") + object_path(bucket, key)
    return f"{url}?{query}" if query else url


class _FixedClockMixin:
    """Signs with a given instant instead of the system clock (botocore reads the clock inline)."""

    at: dt.datetime

    def add_auth(self, request: AWSRequest) -> None:
        # Same steps as botocore.auth.SigV4Auth.add_auth, with the timestamp chosen by us.
        request.context["timestamp"] = self.at.strftime(SIGV4_TIMESTAMP)
        signer: Any = self
        signer._modify_request_before_signing(request)
        canonical_request = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical_request)
        signature = signer.signature(string_to_sign, request)
        signer._inject_signature_to_request(request, signature)


class _HeaderSigner(_FixedClockMixin, S3SigV4Auth):  # type: ignore[misc]
    def __init__(
        self, credentials: Credentials, region: str, at: dt.datetime, payload_hash: str | None
    ) -> None:
        super().__init__(
            BotoCredentials(credentials.access_key, credentials.secret_key), "s3", region
        )
        self.at = at
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        if self._payload_hash is not None:
            return self._payload_hash
        return str(super().payload(request))


class _QuerySigner(_FixedClockMixin, S3SigV4QueryAuth):  # type: ignore[misc]
    def __init__(
        self, credentials: Credentials, region: str, at: dt.datetime, expires: int
    ) -> None:
        boto = BotoCredentials(credentials.access_key, credentials.secret_key)
        super().__init__(boto, "s3", region, expires=expires)
        self.at = at


def utcnow() -> dt.datetime:
    """Now, in UTC, without tzinfo (the form botocore's signer formats)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class SignedRequest:
    """A signed request ready to send, plus what chunk signing needs to continue it."""

    method: str
    url: str
    headers: dict[str, str]
    timestamp: str
    scope: str
    seed_signature: str
    signing_key: bytes


def sign(
    method: str,
    url: str,
    credentials: Credentials,
    region: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    at: dt.datetime | None = None,
) -> SignedRequest:
    """Sign a request with SigV4 in the Authorization header, as botocore would, at ``at``.

    ``payload_hash`` overrides the ``x-amz-content-sha256`` value (e.g. ``UNSIGNED-PAYLOAD`` or
    a streaming mode); by default it is the SHA-256 of ``body``.
    """
    when = at or utcnow()
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    signer = _HeaderSigner(credentials, region, when, payload_hash)
    signer.add_auth(request)
    authorization = str(request.headers["Authorization"])
    seed = authorization.rsplit("Signature=", 1)[1]
    timestamp = str(request.context["timestamp"])
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    return SignedRequest(
        method=method,
        url=url,
        headers={str(k): str(v) for k, v in request.headers.items()},
        timestamp=timestamp,
        scope=scope,
        seed_signature=seed,
        signing_key=signing_key(credentials.secret_key, timestamp[:8], region),
    )


def presign(
    method: str,
    url: str,
    credentials: Credentials,
    region: str,
    *,
    expires: int,
    at: dt.datetime | None = None,
) -> str:
    """A presigned (query-string SigV4) URL valid for ``expires`` seconds from ``at``."""
    request = AWSRequest(method=method, url=url, headers={})
    _QuerySigner(credentials, region, at or utcnow(), expires).add_auth(request)
    return str(request.url)


def signing_key(secret_key: str, date: str, region: str) -> bytes:
    """The SigV4 signing key for ``date`` (YYYYMMDD), ``region`` and service ``s3``."""
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def chunk_signature(signed: SignedRequest, previous: str, chunk: bytes) -> str:
    """The signature of one aws-chunked chunk, chained from ``previous``.

    See https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
    """
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signed.timestamp,
            signed.scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(chunk).hexdigest(),
        ]
    )
    return hmac.new(signed.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signed_chunks(signed: SignedRequest, chunks: Iterable[bytes]) -> bytes:
    """``chunks`` framed as STREAMING-AWS4-HMAC-SHA256-PAYLOAD, ending with an empty chunk."""
    out = bytearray()
    previous = signed.seed_signature
    for chunk in [*chunks, b""]:
        signature = chunk_signature(signed, previous, chunk)
        out += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
        previous = signature
    return bytes(out)


def unsigned_chunks_with_trailer(chunks: Iterable[bytes], trailer: Mapping[str, str]) -> bytes:
    """``chunks`` framed as a STREAMING-UNSIGNED-PAYLOAD-TRAILER body with trailing headers."""
    out = bytearray()
    for chunk in chunks:
        if chunk:
            out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n"
    for name, value in trailer.items():
        out += f"{name}:{value}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def send(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
    body_note: str = "",
) -> RawResponse:
    """Send one request and read the whole response. Records it for evidence."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl_context or ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    sent_headers = dict(headers or {})
    if body and not any(k.lower() == "content-length" for k in sent_headers):
        sent_headers["Content-Length"] = str(len(body))
    record_request(method, target, sent_headers, body_note or (show_bytes(body) if body else ""))
    try:
        connection.request(method, target, body=body or None, headers=sent_headers)
        response = connection.getresponse()
        data = response.read()
        lowered = {k.lower(): v for k, v in response.getheaders()}
        return RawResponse(response.status, response.reason, lowered, data)
    finally:
        connection.close()


def send_signed(signed: SignedRequest, body: bytes = b"", **kwargs: Any) -> RawResponse:
    """Send a request produced by :func:`sign`."""
    return send(signed.method, signed.url, signed.headers, body, **kwargs)


def query(params: Mapping[str, str]) -> str:
    """A query string encoded the way SigV4 canonicalises it (RFC 3986, ``%20`` for space)."""
    return urlencode(sorted(params.items()), quote_via=quote, safe="-_.~")
