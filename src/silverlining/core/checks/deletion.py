"""Deleting objects, one at a time and in batches."""

from __future__ import annotations

from functools import partial

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check


@check(
    "s3.object.delete",
    Level.S3_BASIC,
    "A deleted object is gone (404 NoSuchKey), and deleting a missing key succeeds with 204.",
)
def delete(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "doomed.txt", b"short-lived")
    response = ctx.s3.delete_object(Bucket=bucket, Key="doomed.txt")
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    ctx.expect_equal(status, 204, "the status of DeleteObject")
    ctx.expect_error(
        partial(ctx.s3.get_object, Bucket=bucket, Key="doomed.txt"),
        404,
        "NoSuchKey",
        "GetObject after DeleteObject",
    )
    again = ctx.s3.delete_object(Bucket=bucket, Key="doomed.txt")
    status = again["ResponseMetadata"]["HTTPStatusCode"]
    ctx.expect_equal(status, 204, "the status of deleting a missing key")


@check(
    "s3.object.delete-multiple",
    Level.S3_BASIC,
    "DeleteObjects removes the listed keys, reports each one (missing keys too) as deleted, "
    "and leaves the others.",
)
def delete_multiple(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    keys = [f"batch/{i:02d}" for i in range(12)]
    ctx.put_many(bucket, {key: key.encode() for key in keys})
    doomed = [*keys[:8], "batch/never-existed"]
    response = ctx.s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in doomed]}
    )
    reported = sorted(d["Key"] for d in response.get("Deleted", []))
    ctx.expect_equal(reported, sorted(doomed), "the keys reported Deleted")
    ctx.expect_equal(response.get("Errors", []), [], "Errors")
    left = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    ctx.expect_equal(left, keys[8:], "the keys left in the bucket")


@check(
    "s3.object.delete-multiple-quiet",
    Level.S3_FULL,
    "DeleteObjects in Quiet mode deletes the keys and reports no successes.",
)
def delete_multiple_quiet(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    keys = [f"quiet/{i}" for i in range(5)]
    ctx.put_many(bucket, {key: b"q" for key in keys})
    response = ctx.s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    ctx.expect_equal(response.get("Deleted", []), [], "Deleted entries in Quiet mode")
    ctx.expect_equal(response.get("Errors", []), [], "Errors")
    left = ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    ctx.expect_equal(left, [], "the objects left")
