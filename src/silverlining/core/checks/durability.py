"""Large objects come back intact, whichever way they were uploaded.

Data is generated on the fly (:class:`PatternStream`) and compared as it downloads, so Core
never holds a large object in memory; the evidence names the first differing byte.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from silverlining.core.checks._data import BLOCK, PatternStream
from silverlining.core.checks.multipart import etag_from_part_digests
from silverlining.core.context import CheckContext
from silverlining.core.registry import Level, check

MIB = 1024 * 1024
#: At least 64 MiB, and not a multiple of any block or part size.
LARGE = 64 * MIB + 4097
PART = 16 * MIB


def verify_download(ctx: CheckContext, response: dict[str, Any], seed: str, what: str) -> None:
    """Stream ``response``'s body and compare it, chunk by chunk, with the pattern ``seed``."""
    expected = PatternStream(seed, LARGE)
    got_hash, want_hash = hashlib.sha256(), hashlib.sha256()
    received = 0
    for chunk in response["Body"].iter_chunks(BLOCK):
        reference = expected.read(len(chunk))
        if chunk != reference:
            offset = next(
                (i for i, (a, b) in enumerate(zip(chunk, reference, strict=False)) if a != b),
                min(len(chunk), len(reference)),
            )
            response["Body"].close()
            ctx.fail(
                f"{what}: {LARGE} bytes identical to those uploaded",
                f"a difference at byte {received + offset}",
            )
        got_hash.update(chunk)
        want_hash.update(reference)
        received += len(chunk)
    ctx.expect(
        received == LARGE,
        f"{what}: {LARGE} bytes (sha256 {want_hash.hexdigest()[:16]}...)",
        f"{received} bytes (sha256 {got_hash.hexdigest()[:16]}...)",
    )


@check(
    "s3.durability.large-object",
    Level.S3_FULL,
    "A 64 MiB object uploaded in one streamed PUT reads back byte for byte.",
    weight=10,
)
def large_object(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    seed = f"{ctx.session.run_id}/large-object"
    ctx.s3.put_object(
        Bucket=bucket, Key="large.bin", Body=PatternStream(seed, LARGE), ContentLength=LARGE
    )
    head = ctx.s3.head_object(Bucket=bucket, Key="large.bin")
    ctx.expect_equal(head.get("ContentLength"), LARGE, "Content-Length")
    verify_download(ctx, ctx.s3.get_object(Bucket=bucket, Key="large.bin"), seed, "GetObject")


@check(
    "s3.durability.large-multipart",
    Level.S3_FULL,
    "A 64 MiB object uploaded as parallel multipart parts reads back byte for byte, whole "
    "and by range, with the multipart ETag.",
    weight=10,
)
def large_multipart(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    seed = f"{ctx.session.run_id}/large-multipart"
    key = "large-multipart.bin"
    upload_id = ctx.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    offsets = list(range(0, LARGE, PART))

    def send_part(number: int, start: int) -> dict[str, Any]:
        length = min(PART, LARGE - start)
        response = ctx.s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=PatternStream(seed, length, start),
            ContentLength=length,
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="core-part") as pool:
        futures = [pool.submit(send_part, n, s) for n, s in enumerate(offsets, start=1)]
        parts = [f.result() for f in futures]
    completed = ctx.s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    # The parts' MD5s make the expected ETag; regenerate the data rather than keep it.
    digests = [_md5(PatternStream(seed, min(PART, LARGE - s), s)) for s in offsets]
    ctx.expect_equal(completed.get("ETag"), etag_from_part_digests(digests), "the multipart ETag")
    verify_download(ctx, ctx.s3.get_object(Bucket=bucket, Key=key), seed, "GetObject")
    start = PART - 100  # a range across the boundary between parts 1 and 2
    data, _ = ctx.get(bucket, key, Range=f"bytes={start}-{start + 199}")
    ctx.expect(
        data == PatternStream(seed, 200, start).read(),
        "the 200 bytes across the first part boundary",
        f"{len(data)} bytes that differ",
    )


def _md5(stream: PatternStream) -> bytes:
    digest = hashlib.md5()
    while chunk := stream.read(BLOCK):
        digest.update(chunk)
    return digest.digest()
