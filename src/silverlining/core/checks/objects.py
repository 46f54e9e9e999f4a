"""Objects: put, get, head, empty objects and awkward key names."""

from __future__ import annotations

import datetime as dt

from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check


@check(
    "s3.object.put-get",
    Level.S3_BASIC,
    "An object reads back byte for byte, and its ETag is the MD5 of its bytes.",
)
def put_get(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(100 * 1024 + 7)
    put = ctx.put(bucket, "object.bin", body)
    ctx.expect_equal(put.get("ETag"), quoted_md5(body), "the ETag PutObject returned")
    data, got = ctx.get(bucket, "object.bin")
    ctx.expect_bytes(data, body, "the body GetObject returned")
    ctx.expect_equal(got.get("ContentLength"), len(body), "Content-Length")
    ctx.expect_equal(got.get("ETag"), quoted_md5(body), "the ETag GetObject returned")


@check(
    "s3.object.head",
    Level.S3_BASIC,
    "HeadObject reports an object's size, ETag, Content-Type and a current Last-Modified.",
)
def head(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(4321)
    ctx.put(bucket, "head.txt", body, ContentType="text/plain")
    got = ctx.s3.head_object(Bucket=bucket, Key="head.txt")
    ctx.expect_equal(got.get("ContentLength"), len(body), "Content-Length")
    ctx.expect_equal(got.get("ETag"), quoted_md5(body), "ETag")
    ctx.expect_equal(got.get("ContentType"), "text/plain", "Content-Type")
    modified = got.get("LastModified")
    now = ctx.session.server_now().replace(tzinfo=dt.UTC)
    ctx.expect(
        isinstance(modified, dt.datetime) and abs(modified - now) < dt.timedelta(minutes=5),
        f"Last-Modified within 5 minutes of the provider's clock ({now:%Y-%m-%d %H:%M:%S}Z)",
        repr(modified),
    )


@check(
    "s3.object.empty",
    Level.S3_BASIC,
    "A zero-byte object can be stored and reads back empty with the MD5 of nothing as ETag.",
)
def empty(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "empty", b"")
    data, got = ctx.get(bucket, "empty")
    ctx.expect_bytes(data, b"", "the body")
    ctx.expect_equal(got.get("ContentLength"), 0, "Content-Length")
    ctx.expect_equal(got.get("ETag"), quoted_md5(b""), "ETag")


#: Keys a buyer's data really has: spaces, non-ASCII, characters with meaning in URLs.
AWKWARD_KEYS = (
    "with space.txt",
    "plus+sign",
    "percent%20literal",
    "question?mark",
    "hash#fragment",
    "amp&equals=semi;colon",
    "quotes'and\"double",
    "brackets[]{}()<>",
    "star*caret^pipe|back\\slash",
    "tilde~dollar$at@comma,",
    "double//slash",
    "trailing-slash/",
    "unicodé/日本語/ключ",
    "emoji-\U0001f600",
    "k" * 1000,
)


@check(
    "s3.object.key-names",
    Level.S3_BASIC,
    "Keys with spaces, non-ASCII and URL-reserved characters round-trip unchanged "
    "through PutObject, GetObject and listing.",
)
def key_names(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    for key in AWKWARD_KEYS:
        ctx.put(bucket, key, key.encode())
    for key in AWKWARD_KEYS:
        data, _ = ctx.get(bucket, key)
        ctx.expect_bytes(data, key.encode(), f"the body of {key!r}")
    listed = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    ctx.expect_equal(
        sorted(listed), sorted(AWKWARD_KEYS), "the keys ListObjectsV2 returned (sorted)"
    )
