"""Multipart uploads: how every large file reaches S3."""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check

MIB = 1024 * 1024
#: S3's minimum size of every part but the last.
MIN_PART = 5 * MIB


def etag_from_part_digests(digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, then ``-N``."""
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


def multipart_etag(parts: list[bytes]) -> str:
    """The multipart ETag of an object uploaded as ``parts``."""
    return etag_from_part_digests([hashlib.md5(p).digest() for p in parts])


def upload(ctx: CheckContext, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[Any]]:
    """Create an upload and send ``parts``; returns the upload id and the completed-part list."""
    upload_id = str(ctx.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    done: list[Any] = []
    for number, body in enumerate(parts, start=1):
        response = ctx.s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        ctx.expect_equal(response.get("ETag"), quoted_md5(body), f"the ETag of part {number}")
        done.append({"PartNumber": number, "ETag": response["ETag"]})
    return upload_id, done


@check(
    "s3.multipart.etag",
    Level.S3_BASIC,
    "A multipart upload assembles its parts in order, and the object's ETag is the MD5 of "
    "the parts' MD5s followed by -N.",
    weight=3,
)
def etag(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    parts = [ctx.random_bytes(MIN_PART), ctx.random_bytes(MIN_PART), ctx.random_bytes(1234)]
    upload_id, done = upload(ctx, bucket, "assembled.bin", parts)
    completed = ctx.s3.complete_multipart_upload(
        Bucket=bucket, Key="assembled.bin", UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    expected_etag = multipart_etag(parts)
    ctx.expect_equal(
        completed.get("ETag"), expected_etag, "the ETag CompleteMultipartUpload returned"
    )
    data, got = ctx.get(bucket, "assembled.bin")
    ctx.expect_bytes(data, b"".join(parts), "the assembled object")
    ctx.expect_equal(got.get("ETag"), expected_etag, "the ETag GetObject returned")
    head = ctx.s3.head_object(Bucket=bucket, Key="assembled.bin")
    ctx.expect_equal(head.get("ContentLength"), sum(map(len, parts)), "Content-Length")


@check(
    "s3.multipart.abort",
    Level.S3_FULL,
    "An aborted multipart upload leaves no object and no upload behind, and its id is then "
    "unknown (404 NoSuchUpload).",
)
def abort(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    upload_id, _ = upload(ctx, bucket, "aborted.bin", [ctx.random_bytes(1000)])
    ctx.s3.abort_multipart_upload(Bucket=bucket, Key="aborted.bin", UploadId=upload_id)
    uploads = ctx.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ctx.expect(
        all(u.get("UploadId") != upload_id for u in uploads),
        "ListMultipartUploads no longer lists the aborted upload",
        repr(uploads),
    )
    ctx.expect_error(
        partial(
            ctx.s3.upload_part,
            Bucket=bucket,
            Key="aborted.bin",
            UploadId=upload_id,
            PartNumber=2,
            Body=b"late",
        ),
        404,
        "NoSuchUpload",
        "UploadPart to the aborted upload",
    )
    ctx.expect_error(
        partial(ctx.s3.head_object, Bucket=bucket, Key="aborted.bin"),
        404,
        None,
        "HeadObject of the aborted upload's key",
    )


@check(
    "s3.multipart.list",
    Level.S3_FULL,
    "ListMultipartUploads shows an upload in progress, and ListParts its parts with their "
    "sizes and ETags.",
)
def list_uploads(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    parts = [ctx.random_bytes(2000), ctx.random_bytes(1000)]
    upload_id, _ = upload(ctx, bucket, "in-progress.bin", parts)
    uploads = ctx.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ctx.expect_equal(
        [(u.get("Key"), u.get("UploadId")) for u in uploads],
        [("in-progress.bin", upload_id)],
        "the uploads in progress",
    )
    listed = ctx.s3.list_parts(Bucket=bucket, Key="in-progress.bin", UploadId=upload_id)
    ctx.expect_equal(
        [(p.get("PartNumber"), p.get("Size"), p.get("ETag")) for p in listed.get("Parts", [])],
        [(n, len(b), quoted_md5(b)) for n, b in enumerate(parts, start=1)],
        "the parts (number, size, ETag)",
    )


@check(
    "s3.multipart.entity-too-small",
    Level.S3_FULL,
    "CompleteMultipartUpload refuses a part other than the last smaller than 5 MiB "
    "(400 EntityTooSmall).",
)
def entity_too_small(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    upload_id, done = upload(ctx, bucket, "small.bin", [ctx.random_bytes(1024), b"tail"])
    ctx.expect_error(
        partial(
            ctx.s3.complete_multipart_upload,
            Bucket=bucket,
            Key="small.bin",
            UploadId=upload_id,
            MultipartUpload={"Parts": done},
        ),
        400,
        "EntityTooSmall",
        "CompleteMultipartUpload with a 1 KiB first part",
    )


@check(
    "s3.multipart.invalid-part",
    Level.S3_FULL,
    "CompleteMultipartUpload refuses an unknown part ETag (400 InvalidPart) and parts out of "
    "order (400 InvalidPartOrder).",
    weight=2,
)
def invalid_part(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    # Both parts are full-size, so that no size rule can be what a provider objects to.
    parts = [ctx.random_bytes(MIN_PART), ctx.random_bytes(MIN_PART)]
    upload_id, done = upload(ctx, bucket, "invalid.bin", parts)
    wrong = [done[0], {"PartNumber": 2, "ETag": quoted_md5(b"not what was sent")}]
    ctx.expect_error(
        partial(
            ctx.s3.complete_multipart_upload,
            Bucket=bucket,
            Key="invalid.bin",
            UploadId=upload_id,
            MultipartUpload={"Parts": wrong},
        ),
        400,
        "InvalidPart",
        "CompleteMultipartUpload with a wrong ETag for part 2",
    )
    ctx.expect_error(
        partial(
            ctx.s3.complete_multipart_upload,
            Bucket=bucket,
            Key="invalid.bin",
            UploadId=upload_id,
            MultipartUpload={"Parts": [done[1], done[0]]},
        ),
        400,
        "InvalidPartOrder",
        "CompleteMultipartUpload listing part 2 before part 1",
    )


@check(
    "s3.multipart.upload-part-copy",
    Level.S3_FULL,
    "UploadPartCopy with source ranges builds an object from byte ranges of another.",
    weight=2,
)
def upload_part_copy(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    source = ctx.random_bytes(MIN_PART + 4321)
    ctx.put(bucket, "source.bin", source)
    key = "copied.bin"
    upload_id = ctx.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    ranges = [(0, MIN_PART - 1), (MIN_PART, len(source) - 1)]
    done = []
    for number, (first, last) in enumerate(ranges, start=1):
        response = ctx.s3.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": bucket, "Key": "source.bin"},
            CopySourceRange=f"bytes={first}-{last}",
        )
        part_etag = response.get("CopyPartResult", {}).get("ETag")
        ctx.expect_equal(
            part_etag, quoted_md5(source[first : last + 1]), f"the ETag of copied part {number}"
        )
        done.append({"PartNumber": number, "ETag": part_etag})
    ctx.s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    data, _ = ctx.get(bucket, key)
    ctx.expect_bytes(data, source, "the object assembled from copied ranges")
