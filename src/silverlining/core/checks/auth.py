"""Signature Version 4 in the Authorization header: accepted when right, refused otherwise.

These checks build requests by hand (see :mod:`silverlining.core.rawhttp`) because clients
will not send a wrong signature on purpose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from silverlining.core import rawhttp
from silverlining.core.context import CheckContext
from silverlining.core.rawhttp import Credentials
from silverlining.core.registry import Level, check


@check(
    "s3.auth.sigv4-header",
    Level.S3_BASIC,
    "Requests signed with SigV4 in the Authorization header are accepted, with a signed "
    "payload hash and with UNSIGNED-PAYLOAD.",
)
def sigv4_header(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = b"signed with the payload hash"
    put = ctx.send_signed("PUT", ctx.url(bucket, "signed.txt"), body=body)
    ctx.expect_status(put, 200, what="a PUT with a signed payload")
    unsigned = b"signed without the payload hash"
    put = ctx.send_signed(
        "PUT",
        ctx.url(bucket, "unsigned.txt"),
        body=unsigned,
        payload_hash=rawhttp.UNSIGNED_PAYLOAD,
    )
    ctx.expect_status(put, 200, what="a PUT with UNSIGNED-PAYLOAD")
    for key, expected in (("signed.txt", body), ("unsigned.txt", unsigned)):
        got = ctx.send_signed("GET", ctx.url(bucket, key))
        ctx.expect_status(got, 200, what=f"a signed GET of {key}")
        ctx.expect_bytes(got.body, expected, f"the body of {key}")


@check(
    "s3.auth.anonymous-denied",
    Level.S3_FULL,
    "Unsigned requests to a private bucket are refused with 403 AccessDenied and change nothing.",
)
def anonymous_denied(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "private.txt", b"private")
    attempts = [
        ("GET", ctx.url(bucket, "private.txt"), b""),
        ("GET", ctx.url(bucket, query="list-type=2"), b""),
        ("PUT", ctx.url(bucket, "planted.txt"), b"planted"),
        ("DELETE", ctx.url(bucket, "private.txt"), b""),
        ("GET", ctx.target.base_url + "/", b""),
    ]
    problems = []
    for method, url, body in attempts:
        response = ctx.send(method, url, body=body)
        if response.status != 403 or response.error_code != "AccessDenied":
            path = url.removeprefix(ctx.target.base_url)
            problems.append(f"anonymous {method} {path}: {response.describe()}")
    keys = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if keys != ["private.txt"]:
        problems.append(f"the bucket now holds {keys}")
    if problems:
        ctx.fail(
            "every anonymous request refused with HTTP 403 AccessDenied, and nothing changed",
            "; ".join(problems),
            request=f"{len(attempts)} unsigned requests (GET object, list, PUT, DELETE, "
            "ListBuckets)",
        )


def _tamper(signature_header: str) -> str:
    """The Authorization header with the last hex digit of its signature changed."""
    head, last = signature_header[:-1], signature_header[-1]
    return head + ("0" if last != "0" else "1")


@check(
    "s3.auth.tampered-signature",
    Level.S3_FULL,
    "A request whose signature was altered is refused with 403 SignatureDoesNotMatch.",
)
def tampered_signature(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "target.txt", b"target")
    url = ctx.url(bucket, "target.txt")
    signed = rawhttp.sign("GET", url, ctx.target.credentials, ctx.target.region)
    signed.headers["Authorization"] = _tamper(signed.headers["Authorization"])
    response = ctx.send("GET", url, signed.headers)
    ctx.expect_status(response, 403, "SignatureDoesNotMatch", "a GET with an altered signature")
    body = b"must not be stored"
    signed = rawhttp.sign(
        "PUT",
        ctx.url(bucket, "planted.txt"),
        ctx.target.credentials,
        ctx.target.region,
        body=body,
    )
    signed.headers["Authorization"] = _tamper(signed.headers["Authorization"])
    response = ctx.send("PUT", signed.url, signed.headers, body)
    ctx.expect_status(response, 403, "SignatureDoesNotMatch", "a PUT with an altered signature")
    keys = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    ctx.expect_equal(keys, ["target.txt"], "the keys after the refused PUT")


@check(
    "s3.auth.tampered-request",
    Level.S3_FULL,
    "A correctly signed request changed after signing (another key, another signed header) "
    "is refused with 403 SignatureDoesNotMatch.",
)
def tampered_request(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {"signed-for.txt": b"a", "sent-to.txt": b"b"})
    signed = rawhttp.sign(
        "GET",
        ctx.url(bucket, "signed-for.txt"),
        ctx.target.credentials,
        ctx.target.region,
    )
    response = ctx.send("GET", ctx.url(bucket, "sent-to.txt"), signed.headers)
    ctx.expect_status(response, 403, "SignatureDoesNotMatch", "a GET signed for another key")
    signed = rawhttp.sign(
        "GET",
        ctx.url(bucket, "signed-for.txt"),
        ctx.target.credentials,
        ctx.target.region,
        headers={"Range": "bytes=0-0"},
    )
    headers = dict(signed.headers, Range="bytes=0-")
    response = ctx.send("GET", signed.url, headers)
    ctx.expect_status(
        response, 403, "SignatureDoesNotMatch", "a GET whose signed Range header was changed"
    )


@check(
    "s3.auth.wrong-secret",
    Level.S3_FULL,
    "A request signed with a valid access key id but the wrong secret is refused with 403 "
    "SignatureDoesNotMatch.",
)
def wrong_secret(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "target.txt", b"target")
    wrong = Credentials(ctx.target.credentials.access_key, secrets.token_urlsafe(30))
    response = ctx.send_signed("GET", ctx.url(bucket, "target.txt"), credentials=wrong)
    ctx.expect_status(response, 403, "SignatureDoesNotMatch", "a GET signed with a wrong secret")
    response = ctx.send_signed("GET", ctx.target.base_url + "/", credentials=wrong)
    ctx.expect_status(
        response, 403, "SignatureDoesNotMatch", "ListBuckets signed with a wrong secret"
    )


@check(
    "s3.auth.unknown-access-key",
    Level.S3_FULL,
    "A request signed with an access key id the provider never issued is refused with 403 "
    "InvalidAccessKeyId.",
)
def unknown_access_key(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    unknown = Credentials("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
    response = ctx.send_signed("GET", ctx.url(bucket, query="list-type=2"), credentials=unknown)
    ctx.expect_status(response, 403, "InvalidAccessKeyId", "a request with an unknown key id")


@check(
    "s3.auth.skewed-clock",
    Level.S3_FULL,
    "A correctly signed request dated 20 minutes in the past or future is refused with 403 "
    "RequestTimeTooSkewed.",
)
def skewed_clock(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "target.txt", b"target")
    for label, shift in (("past", -20), ("future", 20)):
        at = ctx.session.server_now() + dt.timedelta(minutes=shift)
        response = ctx.send_signed("GET", ctx.url(bucket, "target.txt"), at=at)
        ctx.expect_status(
            response, 403, "RequestTimeTooSkewed", f"a GET dated 20 minutes in the {label}"
        )
    response = ctx.send_signed(
        "GET", ctx.url(bucket, "target.txt"), at=ctx.session.server_now() - dt.timedelta(minutes=5)
    )
    ctx.expect_status(response, 200, what="a GET dated 5 minutes ago (within the 15 allowed)")


@check(
    "s3.auth.payload-hash-mismatch",
    Level.S3_FULL,
    "A PUT whose body does not match its signed x-amz-content-sha256 is refused with 400 "
    "XAmzContentSHA256Mismatch and nothing is stored.",
)
def payload_hash_mismatch(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    signed_body = b"the body that was signed"
    sent_body = b"the body that was sent!!"  # same length, so only the hash can tell
    url = ctx.url(bucket, "mismatch.txt")
    signed = rawhttp.sign(
        "PUT",
        url,
        ctx.target.credentials,
        ctx.target.region,
        body=signed_body,
    )
    ctx.expect_equal(
        signed.headers.get("X-Amz-Content-SHA256"),
        hashlib.sha256(signed_body).hexdigest(),
        "the signed payload hash (Core's own request)",
    )
    response = ctx.send("PUT", url, signed.headers, sent_body)
    ctx.expect_status(
        response, 400, "XAmzContentSHA256Mismatch", "a PUT whose body differs from its hash"
    )
    keys = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    ctx.expect_equal(keys, [], "the keys after the refused PUT")
