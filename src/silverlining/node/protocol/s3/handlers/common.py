"""Pieces several handlers share: stored headers, checksum rendering, body pumping."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Awaitable
from typing import Any

from silverlining.node import errors
from silverlining.node.domain.model import ObjectRecord
from silverlining.node.domain.streams import Ingest
from silverlining.node.protocol.s3.request import S3Request

#: Content headers S3 stores with an object and returns on GET/HEAD.
CONTENT_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
)
_MEMBER_OF = {
    "content-type": "ContentType",
    "content-encoding": "ContentEncoding",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "cache-control": "CacheControl",
    "expires": "Expires",
    "x-amz-website-redirect-location": "WebsiteRedirectLocation",
}
STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW", "EXPRESS_ONEZONE",
})
PUMP_BUFFER = 1024 * 1024


def stored_headers(req: S3Request, max_metadata: int) -> dict[str, str]:
    """The headers of a write that are stored with the object (content headers and
    x-amz-meta-*), validated."""
    out: dict[str, str] = {}
    meta_size = 0
    for name, value in req.headers.items():
        if name.startswith("x-amz-meta-"):
            out[name] = value
            meta_size += len(name) - len("x-amz-meta-") + len(value)
        elif name in CONTENT_HEADERS:
            out[name] = value
    if meta_size > max_metadata:
        raise errors.MetadataTooLarge(Size=str(meta_size), MaxSizeAllowed=str(max_metadata))
    enc = out.get("content-encoding")
    if enc is not None:
        # aws-chunked is transfer framing, not a property of the object.
        kept = [e.strip() for e in enc.split(",") if e.strip() and e.strip() != "aws-chunked"]
        if kept:
            out["content-encoding"] = ", ".join(kept)
        else:
            del out["content-encoding"]
    sc = req.headers.get("x-amz-storage-class")
    if sc is not None and sc not in STORAGE_CLASSES:
        raise errors.InvalidStorageClass(StorageClassRequested=sc)
    return out


def header_members(headers: dict[str, str]) -> dict[str, Any]:
    """Stored headers as output members (ContentType, ..., Metadata)."""
    out: dict[str, Any] = {}
    meta: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith("x-amz-meta-"):
            meta[name[len("x-amz-meta-"):]] = value
        elif name in _MEMBER_OF:
            out[_MEMBER_OF[name]] = value
    if meta:
        out["Metadata"] = meta
    return out


def checksum_members(checksums: dict[str, str]) -> dict[str, str]:
    out = {f"Checksum{alg}": v for alg, v in checksums.items() if alg != "type"}
    if out and "type" in checksums:
        out["ChecksumType"] = checksums["type"]
    return out


def object_members(rec: ObjectRecord) -> dict[str, Any]:
    """What GetObject and HeadObject return about an object (without checksums)."""
    out: dict[str, Any] = {
        "ETag": rec.etag,
        "LastModified": rec.last_modified,
        "ContentLength": rec.size,
        "AcceptRanges": "bytes",
        "ContentType": "binary/octet-stream",
    }
    out.update(header_members(rec.headers))
    if rec.tags:
        out["TagCount"] = len(rec.tags)
    return out


def parse_copy_source(value: str) -> tuple[str, str]:
    """``x-amz-copy-source``: '/bucket/key' or 'bucket/key', URL-encoded, optional versionId."""
    source, _, query = value.partition("?")
    if query:
        version = urllib.parse.parse_qs(query).get("versionId", [""])[0]
        if version not in ("", "null"):
            raise errors.InvalidArgument("Invalid version id specified",
                                         ArgumentName="x-amz-copy-source")
    decoded = urllib.parse.unquote(source)
    bucket, _, key = decoded.lstrip("/").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source", ArgumentValue=value,
        )
    return bucket, key


async def pump(req: S3Request, ingest: Ingest) -> list[bytes]:
    """Stream the request body into ``ingest``, a batch of at least ``PUMP_BUFFER`` bytes
    (the pieces as received: no copy) per worker-thread hop. The next batch is read once
    the previous one is written, not while: the kernel's socket buffer keeps receiving
    meanwhile, and reading during the hop measured ~25% more CPU per GiB (the event loop
    and the hashing thread then contend). Returns the last (unwritten) batch so the caller
    can write it in the same hop as the commit: a small object costs one thread hop in all,
    or none when it is kept inline."""
    loop = asyncio.get_running_loop()
    body = req.body
    writing: Awaitable[None] | None = None
    try:
        while True:
            if writing is not None:
                await writing
                writing = None
            batch = await body.next_batch(PUMP_BUFFER)
            if body.exhausted or not batch:
                return batch
            writing = loop.run_in_executor(req.executor, ingest.write_many, batch)
    finally:
        if writing is not None:  # failing: let the write finish before the caller discards
            with contextlib.suppress(Exception):
                await writing
