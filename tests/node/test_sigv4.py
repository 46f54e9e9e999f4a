"""SigV4 verification, with botocore as the reference signer.

Requests are signed by botocore's own ``S3SigV4Auth`` / ``S3SigV4QueryAuth`` and handed to the
verifier the way an ASGI server would see them; the wire tests at the end go further and
verify what a boto3 client actually sends over a socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from silverlining.node import errors
from silverlining.node.protocol.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
    Authenticated,
    Verifier,
    derive_signing_key,
)

AKID = "AKIDSILVERLINING"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSILVERKEY"
OTHER_AKID = "AKIDOTHER"
OTHER_SECRET = "another/secret+key"
SECRETS = {AKID: SECRET, OTHER_AKID: OTHER_SECRET}
CREDS = Credentials(AKID, SECRET)
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:9000"


# -- signing with botocore and converting to what ASGI hands us -----------------------------


@dataclass
class Wire:
    """A request as an ASGI server sees it."""

    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes:
        return next(value for key, value in self.headers if key == name)

    def with_header(self, name: bytes, value: bytes | None) -> Wire:
        """Replace (or with ``None`` remove) every header ``name``; add it if absent."""
        headers = [(k, v) for k, v in self.headers if k != name]
        if value is not None:
            headers.append((name, value))
        return replace(self, headers=headers)

    def args(self) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]:
        return self.method, self.raw_path, self.query, self.headers


def to_wire(request: AWSRequest) -> Wire:
    """What http.client would put on the wire for a signed AWSRequest, as ASGI delivers it."""
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))  # http.client uses latin-1
        for name, value in prepared.headers.items()
    ]
    if not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", url.netloc.encode("ascii")))
    body = prepared.body if isinstance(prepared.body, bytes) else b""
    return Wire(prepared.method, url.path.encode(), url.query.encode(), headers, body)


class _StreamingS3SigV4Auth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """botocore signs with a seed signature but never sends signed chunks itself."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


def object_url(bucket: str, key: str = "", query: str = "") -> str:
    """The URL botocore's serializer builds: {Key+} encoded with safe='/~'."""
    path = f"/{bucket}/{percent_encode(key, safe='/~')}" if key else f"/{bucket}"
    return f"{ENDPOINT}{path}{'?' + query if query else ''}"


def sign(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    payload: str | None = None,
    region: str = "us-east-1",
    credentials: Credentials = CREDS,
    when: datetime = T0,
) -> Wire:
    """Sign with botocore's S3SigV4Auth; ``payload`` picks the x-amz-content-sha256 mode."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer: botocore.auth.S3SigV4Auth
    if payload in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER):
        signer = _StreamingS3SigV4Auth(credentials, region, payload)
    else:
        signer = botocore.auth.S3SigV4Auth(credentials, "s3", region)
    if payload == UNSIGNED_PAYLOAD:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    elif payload == STREAMING_UNSIGNED_PAYLOAD_TRAILER:
        request.context["checksum"] = {
            "request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                  "name": "x-amz-checksum-crc32"}
        }
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=when.replace(tzinfo=None)):
        signer.add_auth(request)
    return to_wire(request)


def presign(
    method: str,
    url: str,
    *,
    expires: int | str = 3600,
    headers: dict[str, str] | None = None,
    when: datetime = T0,
) -> Wire:
    """Presign with botocore's S3SigV4QueryAuth."""
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    signer = botocore.auth.S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=expires)
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=when.replace(tzinfo=None)):
        signer.add_auth(request)
    return to_wire(request)


def verifier(now: datetime = T0, **kwargs: Any) -> Verifier:
    return Verifier(SECRETS.get, clock=now.timestamp, **kwargs)


def verify(wire: Wire, now: datetime = T0) -> Authenticated:
    return verifier(now).authenticate(*wire.args())


def authorization_signature(wire: Wire) -> str:
    return wire.header(b"authorization").decode().rpartition("Signature=")[2]


# -- header authentication ------------------------------------------------------------------

KEYS = [
    "plain.txt",
    "with space/and  two",
    "ünïcødé/日本語/emoji-😀",
    "a+b",
    "a=b",
    "tilde~name",
    "bang!",
    "100%",
    "percent%20literal",
    "double//slash",
    "trailing/",
    "/leading-slash",
    "specials:@$&'()*,;[]",
    "dots/../and/./more",
    "question?hash#",
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "POST"])
@pytest.mark.parametrize("key", KEYS)
def test_header_auth_verifies_botocore_signatures(method: str, key: str) -> None:
    body = b"hello world" if method in ("PUT", "POST") else b""
    wire = sign(method, object_url("bucket", key), body=body)
    auth = verify(wire)
    assert auth == Authenticated(
        access_key_id=AKID,
        region="us-east-1",
        service="s3",
        content_sha256=hashlib.sha256(body).hexdigest(),
        streaming=False,
        chunk_signing=None,
        expects_trailer=False,
        presigned=False,
    )


@pytest.mark.parametrize(
    "query",
    [
        # How botocore's serializer builds S3 query strings (percent_encode_sequence).
        percent_encode_sequence(
            {"list-type": "2", "prefix": "a b", "delimiter": "/",
             "continuation-token": "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="}
        ),
        percent_encode_sequence({"prefix": "ü+=&/~!*'()", "max-keys": "5", "encoding-type": "url"}),
        "uploads",
        "uploads=",
        "partNumber=1&uploadId=x",
        "uploadId=2~abc%2Bdef&partNumber=10",
        "tagging",
        "delete",
        "versionId=3%2FL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY%2BMTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
        "acl&versionId=1",
        "b=2&a=1&a=0&c",  # sorted by name, then by value
        "response-content-disposition=attachment%3B%20filename%3D%22r%C3%A9sum%C3%A9.pdf%22",
    ],
)
def test_canonical_query_matches_botocore(query: str) -> None:
    verify(sign("GET", object_url("bucket", "key", query)))


@pytest.mark.parametrize(
    ("sent", "signed"),
    [
        # Clients that leave reserved characters unencoded on the wire but sign the
        # canonical form still verify, because the verifier re-encodes every parameter.
        ("prefix=a/b&delimiter=/", "prefix=a%2Fb&delimiter=%2F"),
        ("token=a%2bb", "token=a%2Bb"),  # lower-case escapes
        ("k=caf%C3%A9&x=%7E", "k=caf%C3%A9&x=~"),  # over-encoded unreserved character
        ("marker=a+b", "marker=a%2Bb"),  # '+' is a literal plus, never a space
    ],
)
def test_query_is_recanonicalised(sent: str, signed: str) -> None:
    wire = sign("GET", object_url("bucket", query=signed))
    verify(replace(wire, query=sent.encode()))


@pytest.mark.parametrize(
    "query", ["versionId=3/L4kqtJlcp%2BrmSp", "prefix=a/b:c@d&delimiter=/", "x=%7e&y=a%2fb"]
)
def test_query_signed_as_sent_verifies(query: str) -> None:
    # botocore signs a query that is already in the URL as it stands, without re-encoding;
    # a hand-built URL with a raw '/' in a value is signed with the raw '/'.
    wire = sign("GET", object_url("bucket", "k", query))
    assert wire.query == query.encode()
    verify(wire)
    verify(presign("GET", object_url("bucket", "k", query)))


def test_plus_in_query_is_not_a_space() -> None:
    wire = sign("GET", object_url("bucket", query="prefix=a%20b"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(replace(wire, query=b"prefix=a+b"))


@pytest.mark.parametrize(
    ("sent", "signed_key"),
    [
        ("/bucket/a!b", "a!b"),  # botocore signs %21
        ("/bucket/caf\xc3\xa9", "café"),  # raw UTF-8 on the wire
        ("/bucket/a%2fb", "a/b"),  # lower-case escape of '/', signed as '/'
    ],
)
def test_path_sent_unencoded_verifies_against_canonical_encoding(
    sent: str, signed_key: str
) -> None:
    wire = sign("GET", object_url("bucket", signed_key))
    raw = sent.encode("latin-1")
    if signed_key == "a/b":  # a client that escapes '/' but signed the canonical '/'
        wire = sign("GET", object_url("bucket", "a/b"))
    verify(replace(wire, raw_path=raw))


def test_path_is_signed_exactly_as_sent_first() -> None:
    # botocore's S3SigV4Auth does not normalise; '..' and '//' are part of the key.
    wire = sign("GET", object_url("bucket", "a/../b//c"))
    assert wire.raw_path == b"/bucket/a/../b//c"
    verify(wire)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(replace(wire, raw_path=b"/bucket/b/c"))


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "garage", "local"])
def test_any_region_is_accepted(region: str) -> None:
    auth = verify(sign("GET", object_url("bucket"), region=region))
    assert auth.region == region
    assert auth.service == "s3"


def test_payload_modes() -> None:
    signed = verify(sign("PUT", object_url("b", "k"), body=b"data"))
    assert signed.content_sha256 == hashlib.sha256(b"data").hexdigest()
    assert not signed.streaming

    empty = verify(sign("GET", object_url("b", "k")))
    assert empty.content_sha256 == EMPTY_SHA256

    unsigned = verify(sign("PUT", object_url("b", "k"), body=b"data", payload=UNSIGNED_PAYLOAD))
    assert unsigned.content_sha256 is None
    assert (unsigned.streaming, unsigned.chunk_signing, unsigned.expects_trailer) == (
        False, None, False,
    )

    trailer = verify(
        sign("PUT", object_url("b", "k"), payload=STREAMING_UNSIGNED_PAYLOAD_TRAILER)
    )
    assert trailer.content_sha256 is None
    assert (trailer.streaming, trailer.chunk_signing, trailer.expects_trailer) == (
        True, None, True,
    )

    for mode, expects_trailer in ((STREAMING_PAYLOAD, False), (STREAMING_PAYLOAD_TRAILER, True)):
        wire = sign("PUT", object_url("b", "k"), payload=mode, region="eu-west-3")
        auth = verify(wire)
        assert auth.content_sha256 is None
        assert auth.streaming
        assert auth.expects_trailer is expects_trailer
        ctx = auth.chunk_signing
        assert ctx is not None
        assert ctx.seed_signature == authorization_signature(wire)
        assert ctx.amz_date == "20261124T120000Z"
        assert ctx.scope == "20261124/eu-west-3/s3/aws4_request"
        assert ctx.signing_key == derive_signing_key(SECRET, "20261124", "eu-west-3", "s3")
        assert SECRET not in repr(ctx)
        assert ctx.signing_key.hex() not in repr(ctx)


def test_uppercase_payload_hash_is_returned_lower_case() -> None:
    digest = hashlib.sha256(b"x").hexdigest().upper()
    wire = sign("PUT", object_url("b", "k"), body=b"x",
                headers={"X-Amz-Content-SHA256": digest})
    # S3SigV4Auth overwrites the header with its own (lower-case) hash; sign it ourselves.
    assert wire.header(b"x-amz-content-sha256").decode() == digest.lower()
    request = AWSRequest("PUT", object_url("b", "k"), data=b"x",
                         headers={"X-Amz-Content-SHA256": digest, "X-Amz-Date": "20261124T120000Z"})
    signer = botocore.auth.SigV4Auth(CREDS, "s3", "us-east-1")  # keeps the header as given
    with mock.patch("botocore.auth.get_current_datetime", return_value=T0.replace(tzinfo=None)):
        signer.add_auth(request)
    auth = verify(to_wire(request))
    assert auth.content_sha256 == digest.lower()


def test_date_header_instead_of_x_amz_date() -> None:
    # botocore signs with an RFC 1123 Date header when the request already has one.
    wire = sign("GET", object_url("b", "k"), headers={"Date": "whatever"})
    assert not any(name == b"x-amz-date" for name, _ in wire.headers)
    assert wire.header(b"date") == b"Tue, 24 Nov 2026 12:00:00 -0000"
    verify(wire)
    with pytest.raises(errors.RequestTimeTooSkewed):
        verify(wire, now=T0 + timedelta(hours=1))
    with pytest.raises(errors.AccessDenied, match="valid Date or x-amz-date"):
        verify(wire.with_header(b"date", b"not a date"))
    with pytest.raises(errors.AccessDenied, match="valid Date or x-amz-date"):
        verify(wire.with_header(b"date", None))


def test_repeated_headers_are_joined_with_commas() -> None:
    request = AWSRequest("GET", object_url("b", "k"))
    request.headers["X-Amz-Meta-Tag"] = "one"  # HTTPHeaders appends: two header lines
    request.headers["X-Amz-Meta-Tag"] = "  two   words  "
    signer = botocore.auth.S3SigV4Auth(CREDS, "s3", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=T0.replace(tzinfo=None)):
        signer.add_auth(request)
    # botocore signs both lines (HTTPHeaders.get_all) though its prepared request would keep
    # only one; send both, as a client that repeats a header does.
    wire = to_wire(request)
    wire = replace(wire, headers=[(b"host", b"127.0.0.1:9000")] + [
        (k.lower().encode(), v.encode()) for k, v in request.headers.items()
    ])
    assert [v for k, v in wire.headers if k == b"x-amz-meta-tag"] == [b"one", b"  two   words  "]
    verify(wire)


def test_header_values_are_trimmed_and_collapsed() -> None:
    wire = sign("GET", object_url("b", "k"), headers={"Range": "  bytes=0-1  ,\t 3-4 "})
    verify(wire)


def test_non_ascii_header_value_as_http_client_sends_it() -> None:
    # http.client encodes header values as latin-1; botocore signs their UTF-8.
    wire = sign("PUT", object_url("b", "k"), body=b"x", headers={"X-Amz-Meta-Name": "café"})
    assert wire.header(b"x-amz-meta-name") == b"caf\xe9"
    verify(wire)


# -- presigned URLs -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_presigned_verifies(method: str) -> None:
    wire = presign(method, object_url("bucket", "dir/ünï code+key=1.txt"), expires=600)
    auth = verify(wire)
    assert auth.presigned
    assert auth.content_sha256 is None  # UNSIGNED-PAYLOAD
    assert not auth.streaming
    assert auth.access_key_id == AKID


def test_presigned_with_operation_parameters() -> None:
    query = percent_encode_sequence(
        {"response-content-disposition": 'attachment; filename="résumé.pdf"', "versionId": "a/b+c"}
    )
    verify(presign("GET", object_url("bucket", "k", query)))
    verify(presign("PUT", object_url("bucket", "k", "partNumber=3&uploadId=abc")))


def test_presigned_expiry_window() -> None:
    wire = presign("GET", object_url("b", "k"), expires=60)
    verify(wire, now=T0)
    verify(wire, now=T0 + timedelta(seconds=60))
    with pytest.raises(errors.AccessDenied, match="Request has expired") as info:
        verify(wire, now=T0 + timedelta(seconds=61))
    assert info.value.extra["X-Amz-Expires"] == "60"
    # A little clock skew the other way is tolerated, more is "not valid yet".
    verify(wire, now=T0 - timedelta(minutes=14))
    with pytest.raises(errors.AccessDenied, match="Request is not valid yet"):
        verify(wire, now=T0 - timedelta(minutes=16))


def test_presigned_week_long_expiry_is_honoured() -> None:
    wire = presign("GET", object_url("b", "k"), expires=604800)
    verify(wire, now=T0 + timedelta(days=6, hours=23))
    with pytest.raises(errors.AccessDenied, match="expired"):
        verify(wire, now=T0 + timedelta(days=7, seconds=1))


@pytest.mark.parametrize("expires", [0, 604801, "abc", "-5", "1.5", "\uff11"])
def test_presigned_bad_expires(expires: int | str) -> None:
    wire = presign("GET", object_url("b", "k"), expires=expires)
    with pytest.raises(errors.AuthorizationQueryParametersError, match="X-Amz-Expires"):
        verify(wire)


def test_presign_max_expires_is_configurable() -> None:
    wire = presign("GET", object_url("b", "k"), expires=7200)
    with pytest.raises(errors.AuthorizationQueryParametersError):
        verifier(max_presign_expires=3600).authenticate(*wire.args())


@pytest.mark.parametrize(
    "drop", ["X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
             "X-Amz-Signature", "X-Amz-Credential"]
)
def test_presigned_missing_parameter(drop: str) -> None:
    wire = presign("GET", object_url("b", "k"))
    query = b"&".join(p for p in wire.query.split(b"&") if not p.startswith(drop.encode()))
    with pytest.raises(errors.AuthorizationQueryParametersError, match="requires"):
        verify(replace(wire, query=query))


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (b"X-Amz-Algorithm=AWS4-HMAC-SHA256", b"X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256",
         errors.InvalidRequest),
        (b"X-Amz-Credential=AKIDSILVERLINING%2F", b"X-Amz-Credential=AKIDSILVERLINING%2Fx%2F",
         errors.AuthorizationQueryParametersError),
        (b"X-Amz-Date=20261124T120000Z", b"X-Amz-Date=2026-11-24T12%3A00%3A00Z",
         errors.AuthorizationQueryParametersError),
        (b"X-Amz-Date=20261124T120000Z", b"X-Amz-Date=20261125T120000Z",
         errors.AuthorizationQueryParametersError),  # not the credential's day
        (b"X-Amz-SignedHeaders=host", b"X-Amz-SignedHeaders=x-amz-date",
         errors.AuthorizationQueryParametersError),
        (b"X-Amz-Credential=AKIDSILVERLINING", b"X-Amz-Credential=AKIDUNKNOWN",
         errors.InvalidAccessKeyId),
    ],
)
def test_presigned_bad_parameters(old: bytes, new: bytes, error: type[errors.S3Error]) -> None:
    wire = presign("GET", object_url("b", "k"))
    assert old in wire.query
    with pytest.raises(error):
        verify(replace(wire, query=wire.query.replace(old, new)))


def test_presigned_tampering() -> None:
    wire = presign("GET", object_url("b", "k"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(replace(wire, raw_path=b"/b/other"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(replace(wire, method="DELETE"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(replace(wire, query=wire.query + b"&versionId=1"))
    with pytest.raises(errors.SignatureDoesNotMatch):  # a longer expiry than was signed
        longer = wire.query.replace(b"X-Amz-Expires=3600", b"X-Amz-Expires=7200")
        verify(replace(wire, query=longer))


def test_presigned_signed_headers_and_unsigned_amz_headers() -> None:
    wire = presign("PUT", object_url("b", "k"), headers={"x-amz-acl": "private"})
    assert b"x-amz-acl" in wire.query  # X-Amz-SignedHeaders=host%3Bx-amz-acl
    verify(wire)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(wire.with_header(b"x-amz-acl", b"public-read"))
    with pytest.raises(errors.AccessDenied, match="not signed") as info:
        verify(wire.with_header(b"x-amz-meta-sneaky", b"1"))
    assert info.value.extra["HeadersNotSigned"] == "x-amz-meta-sneaky"
    # Headers that are not x-amz-* may be added freely (browsers and proxies do).
    verify(wire.with_header(b"user-agent", b"curl").with_header(b"content-type", b"text/plain"))


def test_presigned_with_signed_content_sha256() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    wire = presign("PUT", object_url("b", "k"), headers={"X-Amz-Content-SHA256": digest})
    auth = verify(wire)
    assert auth.content_sha256 == digest


def test_both_mechanisms_at_once_is_refused() -> None:
    wire = presign("GET", object_url("b", "k"))
    header = sign("GET", object_url("b", "k")).header(b"authorization")
    with pytest.raises(errors.InvalidArgument, match="Only one auth mechanism"):
        verify(wire.with_header(b"authorization", header))


# -- failures -------------------------------------------------------------------------------


def test_anonymous_request_is_denied() -> None:
    with pytest.raises(errors.AccessDenied, match="Anonymous"):
        verify(Wire("GET", b"/bucket/key", b"", [(b"host", b"localhost")]))
    with pytest.raises(errors.AccessDenied):
        verify(Wire("GET", b"/bucket", b"list-type=2&prefix=X-Amz-", [(b"host", b"h")]))


def test_signature_v2_is_refused_with_a_clear_message() -> None:
    v2 = Wire("GET", b"/b/k", b"", [(b"host", b"h"), (b"authorization", b"AWS AKID:c2lnbmF0dXJl")])
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        verify(v2)
    query = b"AWSAccessKeyId=AKID&Expires=1893456000&Signature=abc%3D"
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        verify(Wire("GET", b"/b/k", query, [(b"host", b"h")]))


def test_wrong_signature_secret_and_key() -> None:
    wire = sign("GET", object_url("b", "k"))
    good = authorization_signature(wire)
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    header = wire.header(b"authorization").replace(good.encode(), bad.encode())
    with pytest.raises(errors.SignatureDoesNotMatch) as info:
        verify(wire.with_header(b"authorization", header))
    assert info.value.extra["SignatureProvided"] == bad
    assert info.value.extra["AWSAccessKeyId"] == AKID
    assert info.value.extra["CanonicalRequest"].startswith("GET\n/b/k\n\nhost:127.0.0.1:9000\n")
    assert info.value.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20261124T120000Z\n")

    wrong_secret = sign("GET", object_url("b", "k"), credentials=Credentials(AKID, "nope"))
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(wrong_secret)

    unknown = sign("GET", object_url("b", "k"), credentials=Credentials("AKIDNOBODY", SECRET))
    with pytest.raises(errors.InvalidAccessKeyId) as unknown_info:
        verify(unknown)
    assert unknown_info.value.extra["AWSAccessKeyId"] == "AKIDNOBODY"


def test_revoked_key_is_unknown() -> None:
    wire = sign("GET", object_url("b", "k"))
    revoked = Verifier(lambda akid: None, clock=T0.timestamp)
    with pytest.raises(errors.InvalidAccessKeyId):
        revoked.authenticate(*wire.args())


@pytest.mark.parametrize(
    "tamper",
    [
        lambda w: replace(w, method="DELETE"),
        lambda w: replace(w, raw_path=w.raw_path + b"x"),
        lambda w: replace(w, query=b"acl"),
        lambda w: w.with_header(b"host", b"evil.example"),
        lambda w: w.with_header(b"x-amz-content-sha256", EMPTY_SHA256.encode()),
        lambda w: w.with_header(b"x-amz-date", b"20261124T120001Z"),
        lambda w: w.with_header(b"range", b"bytes=0-1"),  # a signed header
    ],
)
def test_tampering_breaks_the_signature(tamper: Callable[[Wire], Wire]) -> None:
    wire = sign("PUT", object_url("b", "k"), body=b"payload", headers={"Range": "bytes=0-9"})
    verify(wire)
    with pytest.raises(errors.SignatureDoesNotMatch):
        verify(tamper(wire))


def test_unsigned_amz_header_is_refused() -> None:
    wire = sign("GET", object_url("b", "k"))
    with pytest.raises(errors.AccessDenied, match="not signed") as info:
        verify(wire.with_header(b"x-amz-server-side-encryption", b"AES256"))
    assert info.value.extra["HeadersNotSigned"] == "x-amz-server-side-encryption"
    verify(wire.with_header(b"user-agent", b"someone"))  # unsigned, but not x-amz-*


@pytest.mark.parametrize("skew", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_clock_skew_is_refused(skew: timedelta) -> None:
    wire = sign("GET", object_url("b", "k"))
    with pytest.raises(errors.RequestTimeTooSkewed) as info:
        verify(wire, now=T0 + skew)
    assert info.value.extra["RequestTime"] == "20261124T120000Z"
    assert info.value.extra["MaxAllowedSkewMilliseconds"] == "900000"
    verify(wire, now=T0 + skew * 14 / 16)  # within the window


def test_missing_content_sha256() -> None:
    wire = sign("GET", object_url("b", "k")).with_header(b"x-amz-content-sha256", None)
    with pytest.raises(errors.InvalidRequest) as info:
        verify(wire)
    assert info.value.message == "Missing required header for this request: x-amz-content-sha256"


@pytest.mark.parametrize(
    "value",
    ["abc", "0" * 63, "0" * 65, "g" * 64, "STREAMING-UNSIGNED-PAYLOAD", "unsigned-payload",
     "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", ""],
)
def test_invalid_content_sha256(value: str) -> None:
    wire = sign("GET", object_url("b", "k"), headers={"X-Amz-Content-SHA256": "ignored"})
    with pytest.raises(errors.InvalidArgument, match="x-amz-content-sha256"):
        verify(wire.with_header(b"x-amz-content-sha256", value.encode()))


def _authorization(credential: str = f"{AKID}/20261124/us-east-1/s3/aws4_request",
                   signed: str = "host;x-amz-content-sha256;x-amz-date",
                   signature: str = "0" * 64) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, "
            f"Signature={signature}")


@pytest.mark.parametrize(
    "value",
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 ",
        "AWS4-HMAC-SHA256,Credential=x",
        "AWS4-HMAC-SHA256 Credential=a/b/c",
        _authorization(credential=f"{AKID}/20261124/us-east-1/s3"),
        _authorization(credential=f"{AKID}/2026112/us-east-1/s3/aws4_request"),
        _authorization(credential=f"{AKID}/2026112x/us-east-1/s3/aws4_request"),
        _authorization(credential=f"{AKID}/20261124//s3/aws4_request"),
        _authorization(credential=f"{AKID}/20261124/us-east-1/s3/aws5_request"),
        _authorization(credential="/20261124/us-east-1/s3/aws4_request"),
        _authorization(credential=f"{AKID}/20261123/us-east-1/s3/aws4_request"),  # wrong day
        _authorization(signed="x-amz-content-sha256;x-amz-date"),  # host not signed
        _authorization() + ", Signature=" + "1" * 64,  # repeated component
        _authorization() + ", Extra=1",
        _authorization().replace("SignedHeaders=", "SignedHeaders"),
        _authorization().replace(", Signature=" + "0" * 64, ""),
    ],
)
def test_malformed_authorization_header(value: str) -> None:
    wire = sign("GET", object_url("b", "k")).with_header(b"authorization", value.encode())
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        verify(wire)


@pytest.mark.parametrize(
    "value", ["", "Bearer token", "AWS AKID:sig", "AWS4-ECDSA-P256-SHA256 Credential=x",
              "aws4-hmac-sha256 Credential=x"]
)
def test_unsupported_authorization_scheme(value: str) -> None:
    wire = sign("GET", object_url("b", "k")).with_header(b"authorization", value.encode())
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        verify(wire)


def test_authorization_header_spacing_variants() -> None:
    wire = sign("GET", object_url("b", "k"))
    compact = wire.header(b"authorization").replace(b", ", b",")
    verify(wire.with_header(b"authorization", compact))


def test_secrets_never_appear_in_errors() -> None:
    def signed(key: str = "k", query: str = "") -> Wire:
        return sign("PUT", object_url("b", key, query), body=b"x", payload=STREAMING_PAYLOAD)

    wire = signed()
    good = authorization_signature(wire)
    broken = "f" * 64
    # (failing request, the signature the verifier computes for it, which must stay hidden)
    failing = [
        (wire.with_header(b"authorization",
                          wire.header(b"authorization").replace(good.encode(), broken.encode())),
         good),
        (replace(wire, raw_path=b"/b/other"), authorization_signature(signed("other"))),
        (replace(wire, query=b"acl"), authorization_signature(signed(query="acl"))),
        (wire.with_header(b"x-amz-meta-x", b"1"), good),
        (wire.with_header(b"x-amz-content-sha256", b"nope"), good),
        (wire.with_header(b"x-amz-content-sha256", None), good),
        (wire.with_header(b"authorization", b"AWS4-HMAC-SHA256 garbage"), good),
        (wire.with_header(b"authorization", b"AWS AKID:sig"), good),
    ]
    key_hex = derive_signing_key(SECRET, "20261124", "us-east-1", "s3").hex()
    for now in (T0, T0 + timedelta(hours=1)):
        for case, hidden in failing:
            with pytest.raises(errors.S3Error) as info:
                verify(case, now=now)
            error = info.value
            rendered = " ".join([str(error), repr(error.args), *error.extra.values()])
            for secret in (SECRET, key_hex, hidden):
                assert secret not in rendered, (case, error)


def test_signing_key_cache_is_bounded() -> None:
    v = verifier()
    for n in range(1100):
        v.authenticate(*sign("GET", object_url("b"), region=f"r{n}").args())
    assert len(v._keys) <= 1024
    v.authenticate(*sign("GET", object_url("b"), region="r5").args())  # evicted, re-derived


def test_verification_speed() -> None:
    """Not a timed assertion: prints the per-request cost on this machine."""
    wire = sign("GET", object_url("bucket", "key", "list-type=2&prefix=a%20b&delimiter=%2F"))
    put = sign("PUT", object_url("bucket", "photos/2026/cat.jpg"), body=b"x" * 100)
    v = verifier()
    for label, case in (("GET ?list-type=2&prefix&delimiter", wire), ("PUT object", put)):
        args = case.args()
        v.authenticate(*args)
        rounds = 20000
        start = time.perf_counter()
        for _ in range(rounds):
            v.authenticate(*args)
        per_request = (time.perf_counter() - start) / rounds * 1e6
        print(f"sigv4 verify, {label}: {per_request:.1f} us/request")


# -- property tests -------------------------------------------------------------------------

_chars = st.characters(codec="utf-8", exclude_categories=["Cs"])  # no lone surrogates
_text = st.text(_chars, max_size=24)


@settings(max_examples=150, deadline=None)
@given(key=st.text(_chars, min_size=1, max_size=40),
       params=st.lists(st.tuples(_text.filter(lambda n: n and not n.startswith("X-Amz-")), _text),
                       max_size=5))
def test_any_key_and_query_verifies(key: str, params: list[tuple[str, str]]) -> None:
    # X-Amz-* parameters are presigned-URL authentication, never operation parameters.
    query = percent_encode_sequence(params) if params else ""
    verify(sign("GET", object_url("bucket", key, query)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from(["AWS4-HMAC-SHA256", " ", ",", "=", "/", "Credential",
                              "SignedHeaders", "Signature", AKID, "20261124", "us-east-1",
                              "s3", "aws4_request", "host", ";", "x-amz-date", "0" * 64,
                              "\t", "é", "\x00"]), max_size=30)
    .map(lambda parts: "".join(parts).encode("utf-8")),
))
def test_arbitrary_authorization_headers_raise_only_s3_errors(value: bytes) -> None:
    wire = _BASE.with_header(b"authorization", value)
    with contextlib.suppress(errors.S3Error):
        verify(wire)


@settings(max_examples=300, deadline=None)
@given(query=st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"X-Amz-Algorithm=AWS4-HMAC-SHA256", b"X-Amz-Credential=",
                              b"X-Amz-Date=20261124T120000Z", b"X-Amz-Expires=", b"99999999",
                              b"X-Amz-SignedHeaders=host", b"X-Amz-Signature=", b"&", b"=",
                              b"%", b"%2F", b"%ff", b"AKIDSILVERLINING", b"0", b"-",
                              b"Signature=", b"AWSAccessKeyId="]), max_size=20)
    .map(b"".join),
), with_auth=st.booleans())
def test_arbitrary_queries_raise_only_s3_errors(query: bytes, with_auth: bool) -> None:
    wire = replace(_BASE, query=query)
    if not with_auth:
        wire = wire.with_header(b"authorization", None)
    with contextlib.suppress(errors.S3Error):
        verify(wire)


@settings(max_examples=200, deadline=None)
@given(path=st.binary(max_size=60), headers=st.lists(
    st.tuples(st.sampled_from([b"x-amz-date", b"date", b"host", b"x-amz-content-sha256",
                               b"x-amz-meta-a", b"range"]), st.binary(max_size=40)),
    max_size=4))
def test_arbitrary_paths_and_headers_raise_only_s3_errors(
    path: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    wire = replace(_BASE, raw_path=path, headers=_BASE.headers + headers)
    with contextlib.suppress(errors.S3Error):
        verify(wire)


_BASE = sign("PUT", object_url("bucket", "key"), body=b"x", headers={"Range": "bytes=0-1"})


# -- on the wire: what a boto3 client really sends -------------------------------------------


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RecordingServer

    def _record(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    break
                body += chunk
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        self.server.requests.append(Wire(
            self.command,
            path.encode("latin-1"),
            query.encode("latin-1"),
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()],
            body,
        ))
        self.send_response(200)
        self.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _record

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    requests: list[Wire]


@pytest.fixture
def recorder() -> Iterator[_RecordingServer]:
    server = _RecordingServer(("127.0.0.1", 0), _RecordingHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _client(port: int) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="eu-north-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_boto3_wire_requests_verify(recorder: _RecordingServer) -> None:
    client = _client(recorder.server_address[1])
    calls: list[Callable[[], object]] = [
        lambda: client.create_bucket(Bucket="bucket"),
        lambda: client.list_objects_v2(Bucket="bucket", Prefix="a b+c/ü=1&", Delimiter="/",
                                       ContinuationToken="tok/en+=="),
        lambda: client.list_objects(Bucket="bucket", Marker="m~!*'()", MaxKeys=10),
        *[
            (lambda key=key: client.put_object(Bucket="bucket", Key=key, Body=b"hello",
                                               Metadata={"k": "v  w"}, ContentType="text/plain"))
            for key in KEYS
        ],
        lambda: client.get_object(Bucket="bucket", Key="a b/ü+=.txt", Range="bytes=0-3"),
        lambda: client.head_object(Bucket="bucket", Key="k"),
        lambda: client.delete_object(Bucket="bucket", Key="dir//x~!"),
        lambda: client.create_multipart_upload(Bucket="bucket", Key="big file"),
        lambda: client.upload_part(Bucket="bucket", Key="big file", PartNumber=1,
                                   UploadId="2~x/y+z=", Body=b"part"),
        lambda: client.put_object_tagging(Bucket="bucket", Key="k",
                                          Tagging={"TagSet": [{"Key": "a", "Value": "b c"}]}),
        lambda: client.delete_objects(Bucket="bucket",
                                      Delete={"Objects": [{"Key": "a"}, {"Key": "b c"}]}),
        lambda: client.get_object_acl(Bucket="bucket", Key="k", VersionId="v/1+2"),
    ]
    for call in calls:
        # The recorder's replies are not real S3 replies; the requests are real.
        with contextlib.suppress(botocore.exceptions.BotoCoreError,
                                 botocore.exceptions.ClientError):
            call()
    client.close()

    assert len(recorder.requests) == len(calls)
    v = Verifier(SECRETS.get)  # the real clock: botocore signed these just now
    for wire in recorder.requests:
        auth = v.authenticate(*wire.args())
        assert auth.region == "eu-north-1"
        if auth.content_sha256 is not None:
            assert hashlib.sha256(wire.body).hexdigest() == auth.content_sha256
    queries = [w.query for w in recorder.requests]
    assert b"uploads" in queries
    assert any(b"delete" in q for q in queries)


def test_boto3_presigned_urls_verify(recorder: _RecordingServer) -> None:
    client = _client(recorder.server_address[1])
    urls = [
        ("GET", client.generate_presigned_url(
            "get_object", Params={"Bucket": "bucket", "Key": "ü b+c=d/~!.txt",
                                  "ResponseContentDisposition": "attachment; filename=x y"},
            ExpiresIn=300)),
        ("PUT", client.generate_presigned_url(
            "put_object", Params={"Bucket": "bucket", "Key": "up load"}, ExpiresIn=60)),
        ("PUT", client.generate_presigned_url(
            "upload_part", Params={"Bucket": "bucket", "Key": "k", "PartNumber": 2,
                                   "UploadId": "u/p+"})),
    ]
    client.close()
    for method, url in urls:
        data = b"payload" if method == "PUT" else None
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method)):
            pass
    v = Verifier(SECRETS.get)
    for wire in recorder.requests:
        auth = v.authenticate(*wire.args())
        assert auth.presigned
        assert auth.content_sha256 is None
