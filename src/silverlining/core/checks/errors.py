"""Error answers: the codes clients branch on, in S3's error document."""

from __future__ import annotations

from functools import partial

from defusedxml import ElementTree

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check


@check(
    "s3.error.no-such-bucket",
    Level.S3_BASIC,
    "Requests to a bucket that does not exist fail with 404 NoSuchBucket.",
)
def no_such_bucket(ctx: CheckContext) -> None:
    missing = ctx.bucket_name("missing")
    calls = {
        "ListObjectsV2": partial(ctx.s3.list_objects_v2, Bucket=missing),
        "GetObject": partial(ctx.s3.get_object, Bucket=missing, Key="k"),
        "PutObject": partial(ctx.s3.put_object, Bucket=missing, Key="k", Body=b"x"),
        "DeleteBucket": partial(ctx.s3.delete_bucket, Bucket=missing),
    }
    for name, call in calls.items():
        ctx.expect_error(call, 404, "NoSuchBucket", f"{name} on a missing bucket")
    ctx.expect_error(
        partial(ctx.s3.head_bucket, Bucket=missing), 404, None, "HeadBucket on a missing bucket"
    )


@check(
    "s3.error.no-such-key",
    Level.S3_BASIC,
    "Reading a key that does not exist fails with 404 NoSuchKey (HeadObject: 404).",
)
def no_such_key(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "present", b"here")
    for key in ("absent", "present/", "Present", "presen"):
        ctx.expect_error(
            partial(ctx.s3.get_object, Bucket=bucket, Key=key),
            404,
            "NoSuchKey",
            f"GetObject {key!r}",
        )
        ctx.expect_error(
            partial(ctx.s3.head_object, Bucket=bucket, Key=key), 404, None, f"HeadObject {key!r}"
        )


@check(
    "s3.error.document",
    Level.S3_FULL,
    "Errors are S3 error documents (XML Error with Code, Message and RequestId) and every "
    "response carries x-amz-request-id.",
)
def document(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    response = ctx.send_signed("GET", ctx.url(bucket, "absent"))
    ctx.expect_status(response, 404, "NoSuchKey", "GET of a missing key")
    try:
        root = ElementTree.fromstring(response.body)
    except Exception as error:  # any parse failure is the finding
        ctx.fail("an XML error document", f"{type(error).__name__}: {error}")
    ctx.expect_equal(root.tag.rsplit("}", 1)[-1], "Error", "the root element")
    children = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in root}
    for name in ("Code", "Message", "RequestId"):
        ctx.expect(bool(children.get(name)), f"a non-empty <{name}>", repr(children))
    ctx.expect(
        bool(response.header("x-amz-request-id")),
        "an x-amz-request-id header on the error",
        repr(dict(response.headers)),
    )
    ok = ctx.send_signed("GET", ctx.url(bucket, query="list-type=2"))
    ctx.expect_status(ok, 200, what="ListObjectsV2")
    ctx.expect(
        bool(ok.header("x-amz-request-id")),
        "an x-amz-request-id header on a success",
        repr(dict(ok.headers)),
    )
