"""Streaming uploads in aws-chunked encoding, framed by hand.

* STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk carries a signature chained from the
  request's (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html).
* STREAMING-UNSIGNED-PAYLOAD-TRAILER: unsigned chunks followed by a trailing checksum header,
  which recent boto3 and aws CLI versions send by default
  (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html).
"""

from __future__ import annotations

from functools import partial

from silverlining.core import rawhttp
from silverlining.core.checks.checksums import crc32
from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check

CHUNK = 64 * 1024
SIZE = 3 * CHUNK + 1000


def _split(body: bytes) -> list[bytes]:
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]


def _streaming_headers(size: int, mode: str) -> dict[str, str]:
    return {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
        "x-amz-content-sha256": mode,
    }


@check(
    "s3.streaming.signed-chunks",
    Level.S3_FULL,
    "An aws-chunked upload with a signature on every chunk "
    "(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) is stored as its decoded bytes.",
)
def signed_chunks(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(SIZE)
    url = ctx.url(bucket, "streamed.bin")
    signed = rawhttp.sign(
        "PUT",
        url,
        ctx.target.credentials,
        ctx.target.region,
        headers=_streaming_headers(len(body), rawhttp.STREAMING_SIGNED),
        payload_hash=rawhttp.STREAMING_SIGNED,
    )
    response = ctx.send("PUT", url, signed.headers, rawhttp.signed_chunks(signed, _split(body)))
    ctx.expect_status(response, 200, what="an aws-chunked PUT with chunk signatures")
    data, got = ctx.get(bucket, "streamed.bin")
    ctx.expect_bytes(data, body, "the stored object (decoded, no chunk framing)")
    ctx.expect_equal(got.get("ETag"), quoted_md5(body), "the ETag (MD5 of the decoded bytes)")
    ctx.expect_equal(got.get("ContentEncoding"), None, "Content-Encoding (aws-chunked is not kept)")


@check(
    "s3.streaming.bad-chunk-signature",
    Level.S3_FULL,
    "An aws-chunked upload with one wrong chunk signature is refused with 403 "
    "SignatureDoesNotMatch and stores nothing.",
)
def bad_chunk_signature(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(SIZE)
    url = ctx.url(bucket, "forged.bin")
    signed = rawhttp.sign(
        "PUT",
        url,
        ctx.target.credentials,
        ctx.target.region,
        headers=_streaming_headers(len(body), rawhttp.STREAMING_SIGNED),
        payload_hash=rawhttp.STREAMING_SIGNED,
    )
    framed = rawhttp.signed_chunks(signed, _split(body))
    # Replace the second chunk's data with other bytes of the same length: the framing stays
    # valid and only the chunk signature can reveal the substitution.
    chunks = _split(body)
    start = framed.index(chunks[1])
    forged = framed[:start] + bytes(len(chunks[1])) + framed[start + len(chunks[1]) :]
    response = ctx.send("PUT", url, signed.headers, forged)
    ctx.expect_status(
        response, 403, "SignatureDoesNotMatch", "an aws-chunked PUT with a forged chunk"
    )
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="forged.bin"),
        404,
        None,
        "HeadObject of the refused upload",
    )


def _trailer_put(
    ctx: CheckContext, bucket: str, key: str, body: bytes, checksum: str
) -> rawhttp.RawResponse:
    url = ctx.url(bucket, key)
    headers = _streaming_headers(len(body), rawhttp.STREAMING_UNSIGNED_TRAILER)
    headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    framed = rawhttp.unsigned_chunks_with_trailer(_split(body), {"x-amz-checksum-crc32": checksum})
    return ctx.send_signed(
        "PUT", url, headers=headers, body=framed, payload_hash=rawhttp.STREAMING_UNSIGNED_TRAILER
    )


@check(
    "s3.streaming.unsigned-trailer",
    Level.S3_FULL,
    "An aws-chunked upload with a trailing CRC32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER, what "
    "recent SDKs send) is stored as its decoded bytes with that checksum.",
)
def unsigned_trailer(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(SIZE)
    response = _trailer_put(ctx, bucket, "trailer.bin", body, crc32(body))
    ctx.expect_status(response, 200, what="an aws-chunked PUT with a trailing checksum")
    data, got = ctx.get(bucket, "trailer.bin", ChecksumMode="ENABLED")
    ctx.expect_bytes(data, body, "the stored object (decoded, no chunk framing)")
    ctx.expect_equal(got.get("ETag"), quoted_md5(body), "the ETag (MD5 of the decoded bytes)")
    ctx.expect_equal(got.get("ChecksumCRC32"), crc32(body), "the stored CRC32 from the trailer")


@check(
    "s3.streaming.trailer-mismatch",
    Level.S3_FULL,
    "An aws-chunked upload whose trailing checksum does not match its bytes is refused with "
    "400 BadDigest and stores nothing.",
)
def trailer_mismatch(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    body = ctx.random_bytes(SIZE)
    response = _trailer_put(ctx, bucket, "bad-trailer.bin", body, crc32(body + b"!"))
    ctx.expect_status(response, 400, "BadDigest", "an aws-chunked PUT with a wrong trailer")
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="bad-trailer.bin"),
        404,
        None,
        "HeadObject of the refused upload",
    )
