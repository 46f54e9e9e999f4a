"""Integrity checksums a client sends with its data: Content-MD5 and x-amz-checksum-*.

https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from functools import partial

from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def crc32c(data: bytes) -> str:
    import google_crc32c  # imported late: only this check needs it

    return b64(int(google_crc32c.value(data)).to_bytes(4, "big"))


def sha1(data: bytes) -> str:
    return b64(hashlib.sha1(data).digest())


def sha256(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


#: Algorithm name (as in boto3 parameters) -> the function computing its base64 value.
ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "CRC32": crc32,
    "CRC32C": crc32c,
    "SHA1": sha1,
    "SHA256": sha256,
}


@check(
    "s3.checksum.content-md5",
    Level.S3_FULL,
    "A PUT with a correct Content-MD5 is stored; one with a wrong Content-MD5 is refused "
    "with 400 BadDigest and stores nothing.",
)
def content_md5(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(9000)
    ctx.put(bucket, "good.bin", body, ContentMD5=b64(hashlib.md5(body).digest()))
    data, _ = ctx.get(bucket, "good.bin")
    ctx.expect_bytes(data, body, "the object stored with a correct Content-MD5")
    wrong = b64(hashlib.md5(body + b"!").digest())
    ctx.expect_error(
        partial(ctx.s3.put_object, Bucket=bucket, Key="bad.bin", Body=body, ContentMD5=wrong),
        400,
        "BadDigest",
        "PutObject with a wrong Content-MD5",
    )
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="bad.bin"),
        404,
        None,
        "HeadObject of the refused object",
    )


@check(
    "s3.checksum.algorithms",
    Level.S3_FULL,
    "x-amz-checksum-crc32, -crc32c, -sha1 and -sha256 sent with a PUT are verified, stored "
    "and returned by GetObject and HeadObject in checksum mode.",
)
def algorithms(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(12345)
    for name, function in ALGORITHMS.items():
        key = f"with-{name.lower()}.bin"
        field = f"Checksum{name}"
        value = function(body)
        put = ctx.put(bucket, key, body, **{field: value})
        ctx.expect_equal(put.get(field), value, f"{field} returned by PutObject")
        data, got = ctx.get(bucket, key, ChecksumMode="ENABLED")
        ctx.expect_bytes(data, body, f"the body of {key}")
        ctx.expect_equal(got.get(field), value, f"{field} returned by GetObject")
        head = ctx.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        ctx.expect_equal(head.get(field), value, f"{field} returned by HeadObject")


@check(
    "s3.checksum.mismatch",
    Level.S3_FULL,
    "A PUT whose x-amz-checksum-* value does not match its body is refused with 400 "
    "BadDigest and stores nothing.",
)
def mismatch(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(4096)
    for name, function in ALGORITHMS.items():
        key = f"bad-{name.lower()}.bin"
        wrong = function(body + b"tampered")
        ctx.expect_error(
            partial(
                ctx.s3.put_object, Bucket=bucket, Key=key, Body=body, **{f"Checksum{name}": wrong}
            ),
            400,
            "BadDigest",
            f"PutObject with a wrong x-amz-checksum-{name.lower()}",
        )
    keys = ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    ctx.expect_equal(keys, [], "the objects after the refused PUTs")
