"""Service and bucket operations."""

from __future__ import annotations

import urllib.parse
from typing import Any

from silverlining.node import errors
from silverlining.node.protocol.s3.handlers.config import refuse_acl_grants
from silverlining.node.protocol.s3.request import Response, S3Request
from silverlining.node.protocol.s3.serializer import RawXml, contents_xml
from silverlining.node.protocol.s3.xmlbody import parse_create_bucket, parse_delete


def _owner(req: S3Request) -> dict[str, str]:
    return {"ID": req.account.canonical_id, "DisplayName": req.account.name}


async def list_buckets(req: S3Request) -> Response:
    buckets = req.node.buckets.list(req.account)
    prefix = req.query.get("prefix", "")
    result: dict[str, Any] = {
        "Buckets": [
            {"Name": b.name, "CreationDate": b.created_at, "BucketRegion": b.region}
            for b in buckets
            if b.name.startswith(prefix)
        ],
        "Owner": _owner(req),
    }
    if prefix:
        result["Prefix"] = prefix
    return req.render("ListBuckets", result)


async def create_bucket(req: S3Request) -> Response:
    refuse_acl_grants(req, bucket=True)
    body = await req.body.read_all(req.node.config.limits.max_xml_body, req.headers)
    location = parse_create_bucket(body)
    await req.run(req.node.buckets.create, req.account, req.bucket, location)
    return req.render("CreateBucket", {"Location": f"/{req.bucket}"})


async def head_bucket(req: S3Request) -> Response:
    bucket = req.node.buckets.owned(req.account, req.bucket)
    return req.render("HeadBucket", {"BucketRegion": bucket.region})


async def delete_bucket(req: S3Request) -> Response:
    await req.run(req.node.buckets.delete, req.account, req.bucket)
    return req.render("DeleteBucket", {})


async def get_bucket_location(req: S3Request) -> Response:
    bucket = req.node.buckets.owned(req.account, req.bucket)
    # S3 answers an empty LocationConstraint for us-east-1.
    region = "" if bucket.region == "us-east-1" else bucket.region
    return req.render("GetBucketLocation", {"LocationConstraint": region})


async def get_bucket_versioning(req: S3Request) -> Response:
    # Versioning is never enabled on this node: S3 answers an empty configuration.
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketVersioning", {})


def _encoder(req: S3Request) -> Any:
    enc = req.query.get("encoding-type")
    if enc is None:
        return lambda s: s
    if enc != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=enc)
    return lambda s: urllib.parse.quote(s, safe="/")


def _listing_args(req: S3Request) -> tuple[str, str, int]:
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    max_keys = req.int_param("max-keys", 1000, high=1000)
    return prefix, delimiter, max_keys


async def list_objects(req: S3Request) -> Response:
    prefix, delimiter, max_keys = _listing_args(req)
    marker = req.query.get("marker", "")
    enc = _encoder(req)
    page = req.node.objects.list(req.account, req.bucket, prefix=prefix, delimiter=delimiter,
                                 after=marker, max_keys=max_keys)
    owner = _owner(req)
    result: dict[str, Any] = {
        "IsTruncated": page.truncated,
        "Marker": enc(marker),
        "Contents": [
            {"Key": enc(e.key), "LastModified": e.last_modified, "ETag": e.etag, "Size": e.size,
             "StorageClass": "STANDARD", "Owner": owner}
            for e in page.entries
        ],
        "Name": req.bucket,
        "Prefix": enc(prefix),
        "MaxKeys": max_keys,
        "CommonPrefixes": [{"Prefix": enc(p)} for p in page.common_prefixes],
    }
    if delimiter:
        result["Delimiter"] = enc(delimiter)
    if "encoding-type" in req.query:
        result["EncodingType"] = "url"
    if page.truncated and delimiter and page.last is not None:
        # S3 returns NextMarker only when a delimiter is given; clients use the last key.
        result["NextMarker"] = enc(page.last)
    return req.render("ListObjects", result)


def _token(key: str) -> str:
    return urllib.parse.quote(key, safe="").encode().hex()


def _untoken(token: str) -> str:
    try:
        return urllib.parse.unquote(bytes.fromhex(token).decode("ascii"), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


async def list_objects_v2(req: S3Request) -> Response:
    prefix, delimiter, max_keys = _listing_args(req)
    enc = _encoder(req)
    token = req.query.get("continuation-token")
    start_after = req.query.get("start-after", "")
    after = _untoken(token) if token is not None else start_after
    if token is None and start_after:
        after = start_after
    page = req.node.objects.list(req.account, req.bucket, prefix=prefix, delimiter=delimiter,
                                 after=after, max_keys=max_keys)
    contents: list[dict[str, Any]] | RawXml
    if req.query.get("fetch-owner", "").lower() == "true":
        owner = _owner(req)
        contents = [{"Key": enc(e.key), "LastModified": e.last_modified, "ETag": e.etag,
                     "Size": e.size, "StorageClass": "STANDARD", "Owner": owner}
                    for e in page.entries]
    else:
        contents = contents_xml([(enc(e.key), e.last_modified, e.etag, e.size)
                                 for e in page.entries])
    result: dict[str, Any] = {
        "IsTruncated": page.truncated,
        "Contents": contents,
        "Name": req.bucket,
        "Prefix": enc(prefix),
        "MaxKeys": max_keys,
        "CommonPrefixes": [{"Prefix": enc(p)} for p in page.common_prefixes],
        "KeyCount": len(page.entries) + len(page.common_prefixes),
    }
    if delimiter:
        result["Delimiter"] = enc(delimiter)
    if "encoding-type" in req.query:
        result["EncodingType"] = "url"
    if token is not None:
        result["ContinuationToken"] = token
    if start_after:
        result["StartAfter"] = enc(start_after)
    if page.truncated and page.last is not None:
        result["NextContinuationToken"] = _token(page.last)
    return req.render("ListObjectsV2", result)


async def delete_objects(req: S3Request) -> Response:
    limits = req.node.config.limits
    body = await req.body.read_all(limits.max_xml_body, req.headers)
    quiet, keys = parse_delete(body, limits.max_delete_keys)
    bucket = req.node.buckets.owned(req.account, req.bucket)
    deleted: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    valid: list[str] = []
    for key in keys:
        if not key or len(key.encode("utf-8", "surrogatepass")) > 1024:
            failed.append({"Key": key, "Code": "InvalidArgument",
                           "Message": "Invalid key: empty or longer than 1024 bytes"})
        else:
            valid.append(key)
    await req.run(req.node.objects.delete_keys, bucket, valid)
    if not quiet:
        # S3 reports every requested key as deleted, whether it existed or not.
        deleted = [{"Key": k} for k in valid]
    return req.render("DeleteObjects", {"Deleted": deleted, "Errors": failed})
