"""Object tagging: key-value labels buyers use for lifecycle, cost allocation and search."""

from __future__ import annotations

from typing import Any

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check

TAGS = {"project": "silver lining", "tier": "gold", "empty": ""}


def _tag_dict(response: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in response.get("TagSet", [])}


@check(
    "s3.tagging.object",
    Level.S3_FULL,
    "PutObjectTagging replaces an object's tags, GetObjectTagging returns them, and "
    "DeleteObjectTagging removes them, leaving the object intact.",
)
def object_tagging(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "tagged.txt", b"tagged")
    ctx.expect_equal(
        _tag_dict(ctx.s3.get_object_tagging(Bucket=bucket, Key="tagged.txt")),
        {},
        "the tags of a new object",
    )
    tag_set = [{"Key": k, "Value": v} for k, v in TAGS.items()]
    ctx.s3.put_object_tagging(Bucket=bucket, Key="tagged.txt", Tagging={"TagSet": tag_set})
    got = ctx.s3.get_object_tagging(Bucket=bucket, Key="tagged.txt")
    ctx.expect_equal(_tag_dict(got), TAGS, "the tags after PutObjectTagging")
    replacement = [{"Key": "only", "Value": "this"}]
    ctx.s3.put_object_tagging(Bucket=bucket, Key="tagged.txt", Tagging={"TagSet": replacement})
    got = ctx.s3.get_object_tagging(Bucket=bucket, Key="tagged.txt")
    ctx.expect_equal(_tag_dict(got), {"only": "this"}, "the tags after replacing them")
    ctx.s3.delete_object_tagging(Bucket=bucket, Key="tagged.txt")
    got = ctx.s3.get_object_tagging(Bucket=bucket, Key="tagged.txt")
    ctx.expect_equal(_tag_dict(got), {}, "the tags after DeleteObjectTagging")
    data, _ = ctx.get(bucket, "tagged.txt")
    ctx.expect_bytes(data, b"tagged", "the object after its tags were deleted")


@check(
    "s3.tagging.on-put",
    Level.S3_FULL,
    "Tags sent with PutObject (x-amz-tagging) are stored, and GetObject reports their "
    "number in x-amz-tagging-count.",
)
def tagging_on_put(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "tagged.txt", b"tagged", Tagging="project=silver%20lining&tier=gold")
    got = ctx.s3.get_object_tagging(Bucket=bucket, Key="tagged.txt")
    ctx.expect_equal(
        _tag_dict(got), {"project": "silver lining", "tier": "gold"}, "the tags set on PUT"
    )
    _, response = ctx.get(bucket, "tagged.txt")
    ctx.expect_equal(response.get("TagCount"), 2, "x-amz-tagging-count on GetObject")
