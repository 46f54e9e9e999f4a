"""Authentication and tenancy on the wire: SigV4 header and presigned auth, streaming
payloads, and every refusal the issue lists."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.conftest import cli
from tests.node.s3util import error_of

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _raw(node: Any, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: bytes = b"", access: tuple[str, str] | None = None,
         payload: str | None = None, when: dt.datetime | None = None,
         tamper: Any = None) -> tuple[int, dict[str, str], bytes]:
    """Sign a request with botocore (optionally at another time, with another payload mode)
    and send it over a plain connection, so the test controls every byte."""
    ak, sk = access or (node.access_key, node.secret_key)
    req = AWSRequest(method=method, url=f"{node.endpoint}{path}", data=body,
                     headers=dict(headers or {}))

    class Auth(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return payload if payload is not None else super().payload(request)

    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=(when or dt.datetime.now(dt.UTC)).replace(tzinfo=None)):
        Auth(Credentials(ak, sk), "s3", "us-east-1").add_auth(req)
    sent = dict(req.headers.items())
    if tamper:
        tamper(sent)
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _code(body: bytes) -> str:
    start = body.index(b"<Code>") + 6
    return body[start:body.index(b"</Code>")].decode()


def test_wrong_secret(node: Any, bucket: str) -> None:
    bad = node.client(node.access_key, "x" * 40)
    assert error_of(bad.list_objects_v2, Bucket=bucket) == ("SignatureDoesNotMatch", 403)


def test_unknown_key(node: Any, bucket: str) -> None:
    bad = node.client("SLNOTAKEY00000000000", "x" * 40)
    assert error_of(bad.list_objects_v2, Bucket=bucket) == ("InvalidAccessKeyId", 403)


def test_anonymous_is_denied(node: Any, bucket: str) -> None:
    anon = boto3.client("s3", endpoint_url=node.endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED,
                                      s3={"addressing_style": "path"}))
    assert error_of(anon.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    assert error_of(anon.list_buckets) == ("AccessDenied", 403)


@pytest.mark.parametrize("part", ["signature", "header", "path"])
def test_tampered_request(node: Any, bucket: str, s3: Any, part: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")

    def tamper(headers: dict[str, str]) -> None:
        if part == "signature":
            auth = headers["Authorization"]
            flipped = "0" if auth[-1] != "0" else "1"
            headers["Authorization"] = auth[:-1] + flipped
        elif part == "header":
            headers["X-Amz-Date"] = headers["X-Amz-Date"][:-3] + "00Z"

    path = f"/{bucket}/a"
    status, _, body = _raw(node, "GET", path, tamper=tamper if part != "path" else None)
    if part == "path":
        # a valid signature for /a replayed against /b must fail
        req = AWSRequest(method="GET", url=f"{node.endpoint}/{bucket}/a")
        S3SigV4Auth(Credentials(node.access_key, node.secret_key), "s3",
                    "us-east-1").add_auth(req)
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        conn.request("GET", f"/{bucket}/b", headers=dict(req.headers.items()))
        resp = conn.getresponse()
        status, body = resp.status, resp.read()
        conn.close()
    assert status == 403
    assert _code(body) == "SignatureDoesNotMatch"
    assert node.secret_key.encode() not in body


def test_tampered_signed_payload(node: Any, bucket: str) -> None:
    # Signed with the SHA-256 of one body, sent with another
    good = b"the real body"
    req_headers = {"x-amz-content-sha256": hashlib.sha256(good).hexdigest()}
    status, _, body = _raw(node, "PUT", f"/{bucket}/p", headers=req_headers,
                           body=b"another body!", payload=req_headers["x-amz-content-sha256"])
    assert status == 400
    assert _code(body) == "XAmzContentSHA256Mismatch"
    status, _, _ = _raw(node, "PUT", f"/{bucket}/p", body=good)
    assert status == 200


@pytest.mark.parametrize("minutes", [-20, 20])
def test_skewed_clock(node: Any, bucket: str, minutes: int) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    status, _, body = _raw(node, "GET", f"/{bucket}", when=when)
    assert (status, _code(body)) == (403, "RequestTimeTooSkewed")
    # within 15 minutes is fine
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes // 3)
    assert _raw(node, "GET", f"/{bucket}", when=when)[0] == 200


@pytest.fixture
def s3v4(node: Any) -> Any:
    """A client that presigns with SigV4 (boto3 presigns with SigV2 by default)."""
    return node.client(node.access_key, node.secret_key, signature_version="s3v4")


def test_presigned_urls(s3v4: Any, bucket: str) -> None:
    s3 = s3v4
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p q"},
                                        ExpiresIn=60)
    req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p q"},
                                        ExpiresIn=60)
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.read() == b"presigned body"
    # tampering with any signed query parameter breaks it
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(get_url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"),
                               timeout=10)
    assert info.value.code == 403
    assert _code(info.value.read()) == "SignatureDoesNotMatch"


def test_expired_presigned_url(s3: Any, s3v4: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="e", Body=b"x")
    urls = [c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"},
                                     ExpiresIn=1) for c in (s3v4, s3)]
    assert "X-Amz-Expires=1" in urls[0] and "AWSAccessKeyId=" in urls[1]
    time.sleep(2.2)
    for url in urls:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=10)
        assert info.value.code == 403
        body = info.value.read()
        assert _code(body) == "AccessDenied"
        assert b"expired" in body


def test_default_boto3_presigned_urls_sigv2(s3: Any, bucket: str) -> None:
    """boto3 presigns with SigV2 unless configured otherwise; such URLs work too."""
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2 k"})
    assert "AWSAccessKeyId=" in put_url
    # SigV2 signs Content-Type; urllib would add a form type the URL was not signed with
    req = urllib.request.Request(put_url, data=b"v2 body", method="PUT",
                                 headers={"Content-Type": ""})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "v2 k",
                              "ResponseContentType": "text/plain"})
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.read() == b"v2 body"
        assert resp.headers["Content-Type"] == "text/plain"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(get_url.replace("Signature=", "Signature=A"), timeout=10)
    assert (info.value.code, _code(info.value.read())) == (403, "SignatureDoesNotMatch")
    # SigV2 header auth (what older tools send) with a wrong secret is refused too
    v2 = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                      aws_access_key_id=s3._request_signer._credentials.access_key,
                      aws_secret_access_key="wrong" * 8,
                      config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    assert error_of(v2.list_objects, Bucket=bucket) == ("SignatureDoesNotMatch", 403)


def test_other_tenant_is_denied(s3: Any, other_s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"mine")
    denied = ("AccessDenied", 403)
    assert error_of(other_s3.get_object, Bucket=bucket, Key="secret") == denied
    assert error_of(other_s3.head_object, Bucket=bucket, Key="secret") == ("403", 403)
    assert error_of(other_s3.put_object, Bucket=bucket, Key="x", Body=b"") == denied
    assert error_of(other_s3.list_objects_v2, Bucket=bucket) == denied
    assert error_of(other_s3.delete_object, Bucket=bucket, Key="secret") == denied
    assert error_of(other_s3.delete_objects, Bucket=bucket,
                    Delete={"Objects": [{"Key": "secret"}]}) == denied
    assert error_of(other_s3.delete_bucket, Bucket=bucket) == denied
    assert error_of(other_s3.copy_object, Bucket=f"{bucket}", Key="c",
                    CopySource={"Bucket": bucket, "Key": "secret"}) == denied
    assert error_of(other_s3.create_multipart_upload, Bucket=bucket, Key="m") == denied
    assert error_of(other_s3.get_object_tagging, Bucket=bucket, Key="secret") == denied
    assert bucket not in [b["Name"] for b in other_s3.list_buckets()["Buckets"]]
    # copying the other tenant's object into one's own bucket is denied too
    own = f"o-{uuid.uuid4().hex[:12]}"
    other_s3.create_bucket(Bucket=own)
    try:
        assert error_of(other_s3.copy_object, Bucket=own, Key="c",
                        CopySource={"Bucket": bucket, "Key": "secret"}) == denied
    finally:
        other_s3.delete_bucket(Bucket=own)
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"mine"


def test_revoked_key_is_refused_on_next_request(node: Any, bucket: str) -> None:
    ak, sk = node.new_credentials("tester")
    c = node.client(ak, sk)
    c.list_objects_v2(Bucket=bucket)
    cli("keys", "revoke", ak, data_dir=node.data_dir)
    assert error_of(c.list_objects_v2, Bucket=bucket) == ("InvalidAccessKeyId", 403)


def _streaming_signed_put(node: Any, bucket: str, key: str, chunks: list[bytes],
                          corrupt: bool = False) -> tuple[int, bytes]:
    total = sum(len(c) for c in chunks)
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(total)}
    when = dt.datetime.now(dt.UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    k = ("AWS4" + node.secret_key).encode()
    for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()

    body = bytearray()
    # headers are signed first; the seed signature is the Authorization signature
    req = AWSRequest(method="PUT", url=f"{node.endpoint}/{bucket}/{key}", headers=headers)

    class Auth(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        Auth(Credentials(node.access_key, node.secret_key), "s3", "us-east-1").add_auth(req)
    previous = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    for data in [*chunks, b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256,
                         hashlib.sha256(data).hexdigest()])
        previous = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        sent_data = data[:-1] + b"!" if corrupt and data else data
        body += b"%x;chunk-signature=%s\r\n%s\r\n" % (len(data), previous.encode(), sent_data)
    sent = {**dict(req.headers.items()), "Content-Length": str(len(body))}
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        conn.request("PUT", urlsplit(req.url).path, body=bytes(body), headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_streaming_signed_payload(node: Any, bucket: str, s3: Any) -> None:
    chunks = [b"a" * 65536, b"b" * 65536, b"tail"]
    status, body = _streaming_signed_put(node, bucket, "streamed", chunks)
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == b"".join(chunks)
    status, body = _streaming_signed_put(node, bucket, "corrupt", chunks, corrupt=True)
    assert (status, _code(body)) == (403, "SignatureDoesNotMatch")
    assert error_of(s3.head_object, Bucket=bucket, Key="corrupt") == ("404", 404)


def test_unsigned_payload_and_trailer_modes(node: Any, bucket: str, s3: Any) -> None:
    status, _, _ = _raw(node, "PUT", f"/{bucket}/u", body=b"unsigned",
                        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                        payload="UNSIGNED-PAYLOAD")
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="u")["Body"].read() == b"unsigned"
    # boto3's own default for PutObject: aws-chunked with a CRC32 trailer
    s3.put_object(Bucket=bucket, Key="t", Body=b"trailer mode")
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"trailer mode"
