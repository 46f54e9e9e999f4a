"""CopyObject: server-side copies within and across buckets."""

from __future__ import annotations

from functools import partial

from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check


@check(
    "s3.object.copy",
    Level.S3_BASIC,
    "CopyObject copies an object's bytes, metadata and Content-Type, within a bucket and "
    "to another bucket.",
)
def copy(ctx: CheckContext) -> None:
    source_bucket = ctx.new_bucket(hint="copy-source")
    other_bucket = ctx.new_bucket(hint="copy-target")
    body = ctx.random_bytes(20_000)
    ctx.put(source_bucket, "original.bin", body, ContentType="image/png", Metadata={"a": "1"})
    for bucket, key in ((source_bucket, "copy.bin"), (other_bucket, "nested/copy.bin")):
        result = ctx.s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": "original.bin"}
        )
        ctx.expect_equal(
            result.get("CopyObjectResult", {}).get("ETag"),
            quoted_md5(body),
            f"the ETag of the copy {bucket}/{key}",
        )
        data, got = ctx.get(bucket, key)
        ctx.expect_bytes(data, body, f"the bytes of the copy {bucket}/{key}")
        ctx.expect_equal(got.get("Metadata"), {"a": "1"}, f"the metadata of {bucket}/{key}")
        ctx.expect_equal(got.get("ContentType"), "image/png", f"the Content-Type of {bucket}/{key}")
    data, _ = ctx.get(source_bucket, "original.bin")
    ctx.expect_bytes(data, body, "the source after copying")


@check(
    "s3.object.copy-replace",
    Level.S3_FULL,
    "CopyObject with MetadataDirective REPLACE sets new metadata (also onto the object "
    "itself); copying an object onto itself without it is refused (400 InvalidRequest).",
)
def copy_replace(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(5000)
    ctx.put(bucket, "original.bin", body, ContentType="text/plain", Metadata={"old": "yes"})
    source = {"Bucket": bucket, "Key": "original.bin"}
    ctx.s3.copy_object(
        Bucket=bucket,
        Key="replaced.bin",
        CopySource=source,
        MetadataDirective="REPLACE",
        ContentType="application/json",
        Metadata={"new": "yes"},
    )
    data, got = ctx.get(bucket, "replaced.bin")
    ctx.expect_bytes(data, body, "the bytes of the copy")
    ctx.expect_equal(got.get("Metadata"), {"new": "yes"}, "the replaced metadata")
    ctx.expect_equal(got.get("ContentType"), "application/json", "the replaced Content-Type")
    ctx.expect_error(
        partial(ctx.s3.copy_object, Bucket=bucket, Key="original.bin", CopySource=source),
        400,
        "InvalidRequest",
        "CopyObject onto itself without changing anything",
    )
    ctx.s3.copy_object(
        Bucket=bucket,
        Key="original.bin",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"updated": "in-place"},
    )
    data, got = ctx.get(bucket, "original.bin")
    ctx.expect_bytes(data, body, "the bytes after an in-place metadata update")
    ctx.expect_equal(got.get("Metadata"), {"updated": "in-place"}, "the metadata in place")
