"""Conditional requests: caches and sync tools avoid needless transfers with them.

Semantics and precedence follow RFC 9110 section 13 as S3 documents them:
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check

BODY = b"conditional body"
DAY = dt.timedelta(days=1)


def _prepare(ctx: CheckContext) -> tuple[str, str, dt.datetime]:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "cond.txt", BODY)
    head = ctx.s3.head_object(Bucket=bucket, Key="cond.txt")
    return bucket, str(head["ETag"]), head["LastModified"]


def _status(response: dict[str, Any]) -> int:
    return int(response["ResponseMetadata"]["HTTPStatusCode"])


@check(
    "s3.conditional.if-match",
    Level.S3_FULL,
    "GET and HEAD with If-Match succeed when the ETag matches and fail with 412 "
    "PreconditionFailed when it does not.",
)
def if_match(ctx: CheckContext) -> None:
    bucket, etag, _ = _prepare(ctx)
    data, _ = ctx.get(bucket, "cond.txt", IfMatch=etag)
    ctx.expect_bytes(data, BODY, "the body with a matching If-Match")
    ctx.s3.head_object(Bucket=bucket, Key="cond.txt", IfMatch=etag)
    other = quoted_md5(b"another version")
    ctx.expect_error(
        partial(ctx.s3.get_object, Bucket=bucket, Key="cond.txt", IfMatch=other),
        412,
        "PreconditionFailed",
        "GetObject with a stale If-Match",
    )
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="cond.txt", IfMatch=other),
        412,
        None,
        "HeadObject with a stale If-Match",
    )


@check(
    "s3.conditional.if-none-match",
    Level.S3_FULL,
    "GET and HEAD with If-None-Match answer 304 Not Modified when the ETag matches, and the "
    "object otherwise.",
)
def if_none_match(ctx: CheckContext) -> None:
    bucket, etag, _ = _prepare(ctx)
    ctx.expect_error(
        partial(ctx.s3.get_object, Bucket=bucket, Key="cond.txt", IfNoneMatch=etag),
        304,
        None,
        "GetObject with the current ETag in If-None-Match",
    )
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="cond.txt", IfNoneMatch=etag),
        304,
        None,
        "HeadObject with the current ETag in If-None-Match",
    )
    data, _ = ctx.get(bucket, "cond.txt", IfNoneMatch=quoted_md5(b"another version"))
    ctx.expect_bytes(data, BODY, "the body with a non-matching If-None-Match")


@check(
    "s3.conditional.if-modified-since",
    Level.S3_FULL,
    "GET with If-Modified-Since answers 304 when the object is not newer, and the object "
    "when it is.",
)
def if_modified_since(ctx: CheckContext) -> None:
    bucket, _, modified = _prepare(ctx)
    for since in (modified, modified + DAY):
        ctx.expect_error(
            partial(ctx.s3.get_object, Bucket=bucket, Key="cond.txt", IfModifiedSince=since),
            304,
            None,
            f"GetObject with If-Modified-Since {since:%Y-%m-%d %H:%M:%S}",
        )
    data, _ = ctx.get(bucket, "cond.txt", IfModifiedSince=modified - DAY)
    ctx.expect_bytes(data, BODY, "the body when modified since the date")


@check(
    "s3.conditional.if-unmodified-since",
    Level.S3_FULL,
    "GET with If-Unmodified-Since fails with 412 when the object is newer, and returns it "
    "when it is not.",
)
def if_unmodified_since(ctx: CheckContext) -> None:
    bucket, _, modified = _prepare(ctx)
    ctx.expect_error(
        partial(ctx.s3.get_object, Bucket=bucket, Key="cond.txt", IfUnmodifiedSince=modified - DAY),
        412,
        "PreconditionFailed",
        "GetObject with an If-Unmodified-Since a day before the object",
    )
    for since in (modified, modified + DAY):
        data, _ = ctx.get(bucket, "cond.txt", IfUnmodifiedSince=since)
        ctx.expect_bytes(data, BODY, f"the body with If-Unmodified-Since {since:%H:%M:%S}")


@check(
    "s3.conditional.precedence",
    Level.S3_FULL,
    "If-Match that holds overrides a failing If-Unmodified-Since (200), and If-None-Match "
    "that fails overrides a holding If-Modified-Since (304).",
)
def precedence(ctx: CheckContext) -> None:
    bucket, etag, modified = _prepare(ctx)
    data, _ = ctx.get(bucket, "cond.txt", IfMatch=etag, IfUnmodifiedSince=modified - DAY)
    ctx.expect_bytes(data, BODY, "the body when If-Match holds and If-Unmodified-Since fails")
    ctx.expect_error(
        partial(
            ctx.s3.get_object,
            Bucket=bucket,
            Key="cond.txt",
            IfNoneMatch=etag,
            IfModifiedSince=modified - DAY,
        ),
        304,
        None,
        "GetObject whose If-None-Match fails while If-Modified-Since holds",
    )


@check(
    "s3.conditional.copy-source-if",
    Level.S3_FULL,
    "CopyObject honours x-amz-copy-source-if-match and -if-none-match: it copies when the "
    "condition holds and fails with 412 when it does not.",
)
def copy_source_if(ctx: CheckContext) -> None:
    bucket, etag, _ = _prepare(ctx)
    source = {"Bucket": bucket, "Key": "cond.txt"}
    other = quoted_md5(b"another version")
    ctx.s3.copy_object(Bucket=bucket, Key="copy-1", CopySource=source, CopySourceIfMatch=etag)
    ctx.s3.copy_object(Bucket=bucket, Key="copy-2", CopySource=source, CopySourceIfNoneMatch=other)
    for header, value in (("CopySourceIfMatch", other), ("CopySourceIfNoneMatch", etag)):
        ctx.expect_error(
            partial(
                ctx.s3.copy_object,
                Bucket=bucket,
                Key="refused",
                CopySource=source,
                **{header: value},
            ),
            412,
            "PreconditionFailed",
            f"CopyObject with a failing {header}",
        )
    keys = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    ctx.expect_equal(keys, ["cond.txt", "copy-1", "copy-2"], "the keys after the copies")
