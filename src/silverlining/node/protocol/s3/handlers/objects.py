"""Object operations: Put, Get, Head, Delete, Copy, and object tagging."""

from __future__ import annotations

import functools
from typing import Any

from silverlining.node import errors
from silverlining.node.domain.conditions import Conditions
from silverlining.node.domain.model import ObjectRecord
from silverlining.node.domain.objects import WriteSpec, parse_tagging
from silverlining.node.protocol.s3.body import ChecksumSpec
from silverlining.node.protocol.s3.handlers.common import (
    checksum_members,
    object_members,
    parse_copy_source,
    pump,
    stored_headers,
)
from silverlining.node.protocol.s3.handlers.config import refuse_acl_grants
from silverlining.node.protocol.s3.request import Response, S3Request
from silverlining.node.protocol.s3.xmlbody import parse_tagging as parse_tagging_xml

#: Objects up to this size are read on the event loop (one pread); larger ones in a thread.
_INLINE_READ = 256 * 1024
_RESPONSE_OVERRIDES = {
    "response-content-type": "ContentType",
    "response-content-language": "ContentLanguage",
    "response-expires": "Expires",
    "response-cache-control": "CacheControl",
    "response-content-disposition": "ContentDisposition",
    "response-content-encoding": "ContentEncoding",
}


def _check_version(req: S3Request) -> None:
    version = req.query.get("versionId")
    if version not in (None, "null"):
        raise errors.InvalidArgument("Invalid version id specified",
                                     ArgumentName="versionId", ArgumentValue=version)


def _tags_header(req: S3Request) -> dict[str, str]:
    value = req.headers.get("x-amz-tagging")
    return parse_tagging(value) if value else {}


async def put_object(req: S3Request) -> Response:
    refuse_acl_grants(req)
    node = req.node
    limits = node.config.limits
    bucket = node.objects.prepare_put(req.account, req.bucket, req.key, req.body.length)
    spec = WriteSpec(
        headers=stored_headers(req, limits.max_user_metadata),
        tags=_tags_header(req),
        content_md5=req.headers.get("content-md5"),
        conditions=req.conditions(),
    )
    checksum = ChecksumSpec.from_headers(req.headers)
    ingest = node.objects.new_ingest(
        max_size=limits.max_put_size,
        payload_sha256=req.auth.content_sha256,
        checksum_algorithm=checksum.algorithm,
        declared_size=req.body.length,
    )
    try:
        tail = await pump(req, ingest)
        expected = checksum.resolve(req.body.trailers) if checksum.algorithm else None
    except BaseException:
        await req.run(ingest.discard)
        raise
    spec = WriteSpec(spec.headers, spec.tags, spec.content_md5, expected, spec.conditions)
    if ingest.inline:
        # A small object: hashing it is cheap and nothing touches the disk but the commit,
        # so it stays on the event loop (no worker-thread hop).
        try:
            ingest.write_many(tail)
        except BaseException:
            ingest.discard()
            raise
        rec, stale = await node.objects.commit_put_inline(bucket, req.key, ingest, spec)
        if stale:
            await req.run(node.blobs.delete_many, stale)
        return _put_response(req, rec)

    def finish() -> tuple[ObjectRecord, list[str]]:
        try:
            ingest.write_many(tail)
        except BaseException:
            ingest.discard()
            raise
        return node.objects.commit_put(bucket, req.key, ingest, spec)

    rec, stale = await req.run(finish)
    response = _put_response(req, rec)
    if stale:
        response.after = functools.partial(node.blobs.delete_many, stale)
    return response


def _put_response(req: S3Request, rec: ObjectRecord) -> Response:
    result: dict[str, Any] = {"ETag": rec.etag}
    result.update(checksum_members(rec.checksums))
    return req.render("PutObject", result)


def _overrides(req: S3Request, result: dict[str, Any]) -> None:
    for param, member in _RESPONSE_OVERRIDES.items():
        value = req.query.get(param)
        if value is not None:
            result[member] = value


async def get_object(req: S3Request) -> Response:
    return await _get(req, head=False)


async def head_object(req: S3Request) -> Response:
    return await _get(req, head=True)


async def _get(req: S3Request, *, head: bool) -> Response:
    _check_version(req)
    part_number = None
    if "partNumber" in req.query:
        part_number = req.int_param("partNumber", 1, low=1)
    conditions = req.conditions()
    try:
        reader, rng = req.node.objects.open(
            req.account, req.bucket, req.key, conditions=conditions,
            range_header=req.headers.get("range"), part_number=part_number,
        )
    except errors.NotModified:
        rec = req.node.objects.head(req.account, req.bucket, req.key)
        not_modified = req.render(
            "HeadObject", {"ETag": rec.etag, "LastModified": rec.last_modified}
        )
        not_modified.status = 304
        return not_modified
    rec = reader.record
    result = object_members(rec)
    status = 200
    if rng is not None:
        status = 206
        result["ContentRange"] = f"bytes {rng[0]}-{rng[1]}/{rec.size}"
        result["ContentLength"] = rng[1] - rng[0] + 1
    elif req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        result.update(checksum_members(rec.checksums))
    if part_number is not None and rec.parts_count:
        result["PartsCount"] = rec.parts_count
    _overrides(req, result)
    response = req.render("GetObject" if not head else "HeadObject", result)
    response.status = status
    if head:
        reader.close()
        return response
    if rec.size <= _INLINE_READ:
        try:
            response.body = reader.read(_INLINE_READ) if reader.length else b""
        finally:
            reader.close()
    else:
        response.stream = reader
    return response


async def delete_object(req: S3Request) -> Response:
    _check_version(req)
    stale = await req.node.objects.delete_async(req.account, req.bucket, req.key)
    if stale:
        await req.run(req.node.blobs.delete_many, stale)
    return req.render("DeleteObject", {})


def _directive(req: S3Request, name: str) -> bool:
    """True for REPLACE, False for COPY (the default)."""
    value = req.headers.get(name, "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument(f"Unknown {name}", ArgumentName=name, ArgumentValue=value)
    return value == "REPLACE"


async def copy_object(req: S3Request) -> Response:
    refuse_acl_grants(req)
    limits = req.node.config.limits
    src_bucket, src_key = parse_copy_source(req.headers["x-amz-copy-source"])
    replace_meta = _directive(req, "x-amz-metadata-directive")
    replace_tags = _directive(req, "x-amz-tagging-directive")
    new_headers = stored_headers(req, limits.max_user_metadata) if replace_meta else None
    new_tags = _tags_header(req) if replace_tags else None
    rec = await req.run(
        req.node.objects.copy,
        req.account, src_bucket, src_key, req.bucket, req.key,
        source_conditions=req.conditions("x-amz-copy-source-"),
        make_headers=lambda src: new_headers if new_headers is not None else src.headers,
        make_tags=lambda src: new_tags if new_tags is not None else src.tags,
        replacing_metadata=replace_meta or replace_tags,
        conditions=Conditions(if_match=req.headers.get("if-match"),
                              if_none_match=req.headers.get("if-none-match")),
    )
    body: dict[str, Any] = {"ETag": rec.etag, "LastModified": rec.last_modified}
    body.update({k: v for k, v in checksum_members(rec.checksums).items()})
    return req.render("CopyObject", {"CopyObjectResult": body})


async def get_object_tagging(req: S3Request) -> Response:
    _check_version(req)
    tags = req.node.objects.get_tags(req.account, req.bucket, req.key)
    return req.render("GetObjectTagging",
                      {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})


async def put_object_tagging(req: S3Request) -> Response:
    _check_version(req)
    body = await req.body.read_all(req.node.config.limits.max_xml_body, req.headers)
    tags = parse_tagging_xml(body)
    await req.run(req.node.objects.put_tags, req.account, req.bucket, req.key, tags)
    return req.render("PutObjectTagging", {})


async def delete_object_tagging(req: S3Request) -> Response:
    _check_version(req)
    await req.run(req.node.objects.put_tags, req.account, req.bucket, req.key, {})
    return req.render("DeleteObjectTagging", {})

