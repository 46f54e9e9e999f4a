"""Presigned URLs: sharing one object operation, for a limited time, with anyone."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from silverlining.core import rawhttp
from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check


@check(
    "s3.auth.presigned-get",
    Level.S3_BASIC,
    "A presigned GET URL made by boto3 fetches the object with no other credentials.",
)
def presigned_get(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(3000)
    ctx.put(bucket, "shared file.bin", body)
    url = ctx.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared file.bin"}, ExpiresIn=300
    )
    response = ctx.send("GET", url)
    ctx.expect_status(response, 200, what="GET of a presigned URL")
    ctx.expect_bytes(response.body, body, "the body fetched through the presigned URL")


@check(
    "s3.auth.presigned-put",
    Level.S3_BASIC,
    "A presigned PUT URL made by boto3 uploads an object with no other credentials.",
)
def presigned_put(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(2500)
    url = ctx.s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "uploaded.bin"}, ExpiresIn=300
    )
    response = ctx.send("PUT", url, body=body)
    ctx.expect_status(response, 200, what="PUT to a presigned URL")
    data, _ = ctx.get(bucket, "uploaded.bin")
    ctx.expect_bytes(data, body, "the object uploaded through the presigned URL")


EXPIRES = 3


@check(
    "s3.auth.presigned-expiry",
    Level.S3_FULL,
    "A presigned URL works until X-Amz-Expires seconds have passed, then is refused with 403 "
    "AccessDenied.",
    weight=5,
)
def presigned_expiry(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "brief.txt", b"brief")
    # Signed at the provider's time as estimated from its Date header (to about half a
    # second; SigV4 dates have whole seconds), so the URL is valid for 1.5 to 3.5 s there.
    signed_at = ctx.session.server_now().replace(microsecond=0)
    started = time.monotonic()
    url = rawhttp.presign(
        "GET",
        ctx.url(bucket, "brief.txt"),
        ctx.target.credentials,
        ctx.target.region,
        expires=EXPIRES,
        at=signed_at,
    )
    response = ctx.send("GET", url)
    ctx.expect_status(response, 200, what=f"a presigned GET within its {EXPIRES} s")
    # Then wait until it has expired whatever the estimate's error.
    time.sleep(max(0.0, EXPIRES + 2.0 - (time.monotonic() - started)))
    response = ctx.send("GET", url)
    ctx.expect_status(response, 403, "AccessDenied", "a presigned GET after it expired")
    old = rawhttp.presign(
        "GET",
        ctx.url(bucket, "brief.txt"),
        ctx.target.credentials,
        ctx.target.region,
        expires=60,
        at=ctx.session.server_now() - dt.timedelta(minutes=10),
    )
    response = ctx.send("GET", old)
    ctx.expect_status(response, 403, "AccessDenied", "a presigned GET that expired 9 minutes ago")


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.update(changes)
    return urlunsplit(parts._replace(query=urlencode(params)))


@check(
    "s3.auth.presigned-tampered",
    Level.S3_FULL,
    "A presigned URL edited after signing (another key, a longer expiry) is refused with 403.",
)
def presigned_tampered(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {"allowed.txt": b"allowed", "secret.txt": b"secret"})
    url = rawhttp.presign(
        "GET",
        ctx.url(bucket, "allowed.txt"),
        ctx.target.credentials,
        ctx.target.region,
        expires=60,
    )
    response = ctx.send("GET", url.replace("/allowed.txt?", "/secret.txt?"))
    ctx.expect_status(
        response, 403, "SignatureDoesNotMatch", "a presigned GET redirected to another key"
    )
    response = ctx.send("GET", _with_query(url, **{"X-Amz-Expires": "604800"}))
    ctx.expect_status(
        response, 403, "SignatureDoesNotMatch", "a presigned GET with its expiry extended"
    )
