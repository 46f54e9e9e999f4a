"""Multipart upload operations."""

from __future__ import annotations

from typing import Any

from silverlining.node import errors
from silverlining.node.domain.checksums import normalize_algorithm
from silverlining.node.domain.model import Part
from silverlining.node.protocol.s3.body import ChecksumSpec
from silverlining.node.protocol.s3.handlers.common import (
    checksum_members,
    parse_copy_source,
    pump,
    stored_headers,
)
from silverlining.node.protocol.s3.handlers.config import refuse_acl_grants
from silverlining.node.protocol.s3.handlers.objects import _tags_header
from silverlining.node.protocol.s3.request import Response, S3Request
from silverlining.node.protocol.s3.xmlbody import parse_complete


async def create_multipart_upload(req: S3Request) -> Response:
    refuse_acl_grants(req)
    limits = req.node.config.limits
    alg_header = req.headers.get("x-amz-checksum-algorithm")
    algorithm = normalize_algorithm(alg_header) if alg_header else None
    ctype = req.headers.get("x-amz-checksum-type")
    if ctype is not None:
        ctype = ctype.upper()
        if ctype not in ("COMPOSITE", "FULL_OBJECT"):
            raise errors.InvalidRequest(f"Value for x-amz-checksum-type header is invalid: "
                                        f"{ctype}")
        if ctype == "FULL_OBJECT":
            raise errors.NotImplementedYet(
                "FULL_OBJECT multipart checksums are not supported by this node; use COMPOSITE."
            )
    upload = await req.run(
        req.node.multipart.create, req.account, req.bucket, req.key,
        headers=stored_headers(req, limits.max_user_metadata),
        tags=_tags_header(req),
        checksum_algorithm=algorithm,
        checksum_type=(ctype or "COMPOSITE") if algorithm else None,
    )
    result: dict[str, Any] = {"Bucket": req.bucket, "Key": req.key, "UploadId": upload.upload_id}
    if algorithm:
        result["ChecksumAlgorithm"] = algorithm
        result["ChecksumType"] = upload.checksum_type
    return req.render("CreateMultipartUpload", result)


def _part_number(req: S3Request) -> int:
    number = req.int_param("partNumber", 0, low=0)
    req.node.multipart.check_part_number(number)
    return number


async def upload_part(req: S3Request) -> Response:
    node = req.node
    limits = node.config.limits
    number = _part_number(req)
    upload = node.multipart.find(req.account, req.bucket, req.key, req.query["uploadId"])
    if req.body.length is not None and req.body.length > limits.max_part_size:
        raise errors.EntityTooLarge(ProposedSize=str(req.body.length),
                                    MaxSizeAllowed=str(limits.max_part_size))
    checksum = ChecksumSpec.from_headers(req.headers)
    algorithm = checksum.algorithm or upload.checksum_algorithm
    ingest = node.objects.new_ingest(max_size=limits.max_part_size,
                                     payload_sha256=req.auth.content_sha256,
                                     checksum_algorithm=algorithm)
    try:
        tail = await pump(req, ingest)
        expected = checksum.resolve(req.body.trailers) if checksum.algorithm else None
    except BaseException:
        await req.run(ingest.discard)
        raise

    def finish() -> Part:
        try:
            ingest.write_many(tail)
        except BaseException:
            ingest.discard()
            raise
        return node.multipart.commit_part(upload, number, ingest,
                                          content_md5=req.headers.get("content-md5"),
                                          checksum=expected)

    part = await req.run(finish)
    result: dict[str, Any] = {"ETag": part.etag}
    result.update({f"Checksum{a}": v for a, v in part.checksums.items()})
    return req.render("UploadPart", result)


async def upload_part_copy(req: S3Request) -> Response:
    number = _part_number(req)
    upload = req.node.multipart.find(req.account, req.bucket, req.key, req.query["uploadId"])
    src_bucket, src_key = parse_copy_source(req.headers["x-amz-copy-source"])
    part = await req.run(
        req.node.multipart.copy_part, req.account, upload, number,
        src_bucket=src_bucket, src_key=src_key,
        source_range=req.headers.get("x-amz-copy-source-range"),
        source_conditions=req.conditions("x-amz-copy-source-"),
    )
    return req.render("UploadPartCopy", {
        "CopyPartResult": {"ETag": part.etag, "LastModified": part.last_modified},
    })


async def complete_multipart_upload(req: S3Request) -> Response:
    body = await req.body.read_all(req.node.config.limits.max_xml_body, req.headers)
    requested = parse_complete(body)
    upload = req.node.multipart.find(req.account, req.bucket, req.key, req.query["uploadId"])
    rec = await req.run(req.node.multipart.complete, req.account, upload, requested,
                        req.conditions())
    result: dict[str, Any] = {
        "Location": f"/{req.bucket}/{req.key}",
        "Bucket": req.bucket,
        "Key": req.key,
        "ETag": rec.etag,
    }
    result.update(checksum_members(rec.checksums))
    return req.render("CompleteMultipartUpload", result)


async def abort_multipart_upload(req: S3Request) -> Response:
    upload = req.node.multipart.find(req.account, req.bucket, req.key, req.query["uploadId"])
    await req.run(req.node.multipart.abort, req.account, upload)
    return req.render("AbortMultipartUpload", {})


def _initiator(req: S3Request) -> dict[str, str]:
    return {"ID": req.account.canonical_id, "DisplayName": req.account.name}


async def list_parts(req: S3Request) -> Response:
    upload = req.node.multipart.find(req.account, req.bucket, req.key, req.query["uploadId"])
    marker = req.int_param("part-number-marker", 0)
    max_parts = req.int_param("max-parts", 1000, high=1000)
    parts, truncated = req.node.multipart.list_parts(upload, after=marker, max_parts=max_parts)
    result: dict[str, Any] = {
        "Bucket": req.bucket,
        "Key": req.key,
        "UploadId": upload.upload_id,
        "PartNumberMarker": marker,
        "MaxParts": max_parts,
        "IsTruncated": truncated,
        "Parts": [
            {"PartNumber": p.part_number, "LastModified": p.last_modified, "ETag": p.etag,
             "Size": p.size, **{f"Checksum{a}": v for a, v in p.checksums.items()}}
            for p in parts
        ],
        "Initiator": _initiator(req),
        "Owner": _initiator(req),
        "StorageClass": "STANDARD",
    }
    if parts:
        result["NextPartNumberMarker"] = parts[-1].part_number
    if upload.checksum_algorithm:
        result["ChecksumAlgorithm"] = upload.checksum_algorithm
        result["ChecksumType"] = upload.checksum_type
    return req.render("ListParts", result)


async def list_multipart_uploads(req: S3Request) -> Response:
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    upload_id_marker = req.query.get("upload-id-marker", "")
    max_uploads = req.int_param("max-uploads", 1000, high=1000)
    listing = req.node.multipart.list_uploads(
        req.account, req.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads,
    )
    result: dict[str, Any] = {
        "Bucket": req.bucket,
        "KeyMarker": key_marker,
        "UploadIdMarker": upload_id_marker,
        "Prefix": prefix,
        "MaxUploads": max_uploads,
        "IsTruncated": listing.truncated,
        "Uploads": [
            {"UploadId": u.upload_id, "Key": u.key, "Initiated": u.initiated,
             "StorageClass": "STANDARD", "Owner": _initiator(req), "Initiator": _initiator(req),
             **({"ChecksumAlgorithm": u.checksum_algorithm} if u.checksum_algorithm else {})}
            for u in listing.uploads
        ],
        "CommonPrefixes": [{"Prefix": p} for p in listing.common_prefixes],
    }
    if delimiter:
        result["Delimiter"] = delimiter
    if listing.truncated and listing.uploads:
        result["NextKeyMarker"] = listing.uploads[-1].key
        result["NextUploadIdMarker"] = listing.uploads[-1].upload_id
    return req.render("ListMultipartUploads", result)


