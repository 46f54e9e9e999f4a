"""User metadata and content headers: what a buyer stores beside the bytes."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
from typing import Any

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check

USER_METADATA = {
    "color": "blue",
    "mixed-case-name": "Value With Spaces",
    "checksum-sha1": "9f86d081884c7d659a2feaa0c55ad015",
    "empty-looking": "-",
}

CONTENT_HEADERS = {
    "ContentType": "text/csv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="report.csv"',
    "ContentLanguage": "en-GB",
    "CacheControl": "max-age=3600, public",
}
EXPIRES = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@check(
    "s3.object.user-metadata",
    Level.S3_BASIC,
    "User metadata (x-amz-meta-*) set on PutObject comes back unchanged on GetObject "
    "and HeadObject.",
)
def user_metadata(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    sent = dict(USER_METADATA)
    sent["Mixed-Case-Name"] = sent.pop("mixed-case-name")  # S3 lower-cases metadata names
    ctx.put(bucket, "meta.txt", b"metadata", Metadata=sent)
    _, got = ctx.get(bucket, "meta.txt")
    ctx.expect_equal(got.get("Metadata"), USER_METADATA, "GetObject metadata")
    head = ctx.s3.head_object(Bucket=bucket, Key="meta.txt")
    ctx.expect_equal(head.get("Metadata"), USER_METADATA, "HeadObject metadata")


def _expires_header(response: dict[str, Any]) -> dt.datetime | None:
    raw = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("expires")
    if not raw:
        return None
    try:
        return email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None


@check(
    "s3.object.content-headers",
    Level.S3_BASIC,
    "Content-Type, Content-Encoding, Content-Disposition, Content-Language, Cache-Control "
    "and Expires set on PutObject come back on GetObject and HeadObject.",
)
def content_headers(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = gzip.compress(b"a,b\n1,2\n", mtime=0)
    ctx.put(bucket, "report.csv.gz", body, Expires=EXPIRES, **CONTENT_HEADERS)
    data, got = ctx.get(bucket, "report.csv.gz")
    ctx.expect_bytes(data, body, "the stored (still gzip-encoded) body")
    head = ctx.s3.head_object(Bucket=bucket, Key="report.csv.gz")
    for label, response in (("GetObject", got), ("HeadObject", head)):
        for field, value in CONTENT_HEADERS.items():
            ctx.expect_equal(response.get(field), value, f"{label} {field}")
        ctx.expect_equal(_expires_header(response), EXPIRES, f"{label} Expires")


@check(
    "s3.object.response-overrides",
    Level.S3_FULL,
    "GetObject's response-content-* and response-expires parameters override the headers "
    "of that one response.",
)
def response_overrides(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "plain.bin", b"override me", ContentType="application/octet-stream")
    overrides = {
        "ResponseContentType": "text/plain",
        "ResponseContentDisposition": 'inline; filename="x.txt"',
        "ResponseContentLanguage": "fr",
        "ResponseCacheControl": "no-cache",
        "ResponseContentEncoding": "identity",
    }
    data, got = ctx.get(bucket, "plain.bin", ResponseExpires=EXPIRES, **overrides)
    ctx.expect_bytes(data, b"override me", "the body")
    for field, value in overrides.items():
        ctx.expect_equal(got.get(field.removeprefix("Response")), value, f"{field} -> header")
    ctx.expect_equal(_expires_header(got), EXPIRES, "ResponseExpires -> Expires header")
    head = ctx.s3.head_object(Bucket=bucket, Key="plain.bin")
    ctx.expect_equal(
        head.get("ContentType"), "application/octet-stream", "the stored Content-Type afterwards"
    )
