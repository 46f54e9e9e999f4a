"""Byte ranges: what resumable downloads and media players depend on."""

from __future__ import annotations

from functools import partial

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check

SIZE = 1000


@check(
    "s3.object.range",
    Level.S3_BASIC,
    "Ranged GETs (bytes=a-b, open bytes=a-, suffix bytes=-n, an end past the size) return "
    "206 with exactly those bytes and the right Content-Range.",
)
def ranges(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(SIZE)
    ctx.put(bucket, "ranged.bin", body)
    cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=0-9", 0, 9),
        ("bytes=500-749", 500, 749),
        ("bytes=990-", 990, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=100-5000", 100, SIZE - 1),
        ("bytes=-5000", 0, SIZE - 1),
    ]
    for header, first, last in cases:
        data, got = ctx.get(bucket, "ranged.bin", Range=header)
        status = got["ResponseMetadata"]["HTTPStatusCode"]
        ctx.expect_equal(status, 206, f"the status for Range: {header}")
        ctx.expect_bytes(data, body[first : last + 1], f"the bytes for Range: {header}")
        ctx.expect_equal(
            got.get("ContentRange"), f"bytes {first}-{last}/{SIZE}", f"Content-Range for {header}"
        )
        ctx.expect_equal(got.get("ContentLength"), last - first + 1, f"Content-Length for {header}")


@check(
    "s3.object.range-invalid",
    Level.S3_BASIC,
    "A range starting past the end of an object is refused with 416 InvalidRange.",
)
def range_invalid(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "ranged.bin", ctx.random_bytes(SIZE))
    for header in (f"bytes={SIZE}-", f"bytes={SIZE + 100}-{SIZE + 200}"):
        ctx.expect_error(
            partial(ctx.s3.get_object, Bucket=bucket, Key="ranged.bin", Range=header),
            416,
            "InvalidRange",
            f"GetObject with Range: {header}",
        )
