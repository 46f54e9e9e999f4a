"""Objects: write (through an Ingest), read, copy, delete, tag, list."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace

from silverlining.node import errors
from silverlining.node.domain.buckets import BucketService
from silverlining.node.domain.conditions import (
    NO_CONDITIONS,
    Conditions,
    check_copy_source,
    check_read,
    check_write,
    parse_range,
)
from silverlining.node.domain.limits import Limits
from silverlining.node.domain.listing import ListingPage, list_page
from silverlining.node.domain.model import Account, Bucket, ObjectRecord, Segment
from silverlining.node.domain.names import check_key
from silverlining.node.domain.streams import INLINE_MAX, Ingest, ObjectReader
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.objects import ObjectRepository

MAX_TAGS = 10
_OPEN_RETRIES = 5


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """What a write declares besides its bytes."""

    headers: dict[str, str]
    tags: dict[str, str]
    content_md5: str | None = None
    checksum: str | None = None  # expected base64 value of ingest's checksum algorithm
    conditions: Conditions = NO_CONDITIONS


def parse_tagging(value: str) -> dict[str, str]:
    """The x-amz-tagging header (a URL query string) as a validated tag dict."""
    tags: dict[str, str] = {}
    for k, v in urllib.parse.parse_qsl(value, keep_blank_values=True):
        if k in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key", TagKey=k)
        tags[k] = v
    validate_tags(tags)
    return tags


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise errors.InvalidTag("Object tags cannot be greater than 10")
    for k, v in tags.items():
        if not 1 <= len(k) <= 128:
            raise errors.InvalidTag("The TagKey you have provided is invalid", TagKey=k)
        if len(v) > 256:
            raise errors.InvalidTag("The TagValue you have provided is invalid", TagKey=k)
        if k.startswith("aws:"):
            raise errors.InvalidTag("Your TagKey cannot be prefixed with aws:", TagKey=k)


class ObjectService:
    def __init__(
        self, repo: ObjectRepository, blobs: BlobStore, buckets: BucketService, limits: Limits
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.buckets = buckets
        self.limits = limits

    # writing ---------------------------------------------------------------------------
    def prepare_put(
        self, account: Account, bucket: str, key: str, declared_size: int | None
    ) -> Bucket:
        """Checks done before any byte is read: the bucket, the key, the size, the quota."""
        b = self.buckets.owned(account, bucket)
        check_key(key)
        if declared_size is not None and declared_size > self.limits.max_put_size:
            raise errors.EntityTooLarge(
                ProposedSize=str(declared_size), MaxSizeAllowed=str(self.limits.max_put_size)
            )
        return b

    def new_ingest(
        self,
        *,
        max_size: int,
        payload_sha256: str | None,
        checksum_algorithm: str | None,
        declared_size: int | None = None,
    ) -> Ingest:
        """An Ingest for an object's bytes; small objects of known size stay inline."""
        return Ingest(
            self.blobs,
            max_size=max_size,
            payload_sha256=payload_sha256,
            checksum_algorithm=checksum_algorithm,
            inline=declared_size is not None and declared_size <= INLINE_MAX,
        )

    def commit_put(
        self, bucket: Bucket, key: str, ingest: Ingest, spec: WriteSpec
    ) -> tuple[ObjectRecord, list[str]]:
        """Verify the bytes, make them durable, then commit the metadata (the moment the new
        object becomes visible). On any error the ingest is discarded and nothing changed.

        Returns the record and the replaced object's blob ids, which the caller deletes:
        unlinking a large blob takes ~20 ms (its pages and extents are freed), which need
        not delay the answer. A crash before they are deleted leaves orphans that
        ``Node.sweep()`` removes."""
        rec = self._record_for(bucket, key, ingest, spec)
        old = self._commit(bucket, rec, spec.conditions, delete_old=False)
        return rec, [] if old is None else [b for b in old.blob_ids if b not in rec.blob_ids]

    async def commit_put_inline(
        self, bucket: Bucket, key: str, ingest: Ingest, spec: WriteSpec
    ) -> tuple[ObjectRecord, list[str]]:
        """:meth:`commit_put` for an inline (small) object, on the event loop: nothing but
        the commit touches the disk. Returns the record and the replaced object's blob ids,
        which the caller deletes (off the loop) once this returns."""
        assert ingest.inline
        rec = self._record_for(bucket, key, ingest, spec)
        precondition = (lambda e: check_write(spec.conditions, e)) if spec.conditions else None
        old = await self.repo.put_object_async(bucket.account_id, rec, precondition)
        return rec, [] if old is None else old.blob_ids

    def _record_for(
        self, bucket: Bucket, key: str, ingest: Ingest, spec: WriteSpec
    ) -> ObjectRecord:
        try:
            ingest.verify(content_md5=spec.content_md5, checksum=spec.checksum)
            segments, data = ingest.commit()
        except BaseException:
            ingest.discard()
            raise
        checksums: dict[str, str] = {}
        value = ingest.digests.checksum_b64()
        if value is not None and ingest.digests.checksum_algorithm:
            checksums = {ingest.digests.checksum_algorithm: value, "type": "FULL_OBJECT"}
        rec = ObjectRecord(
            bucket=bucket.name,
            key=key,
            size=ingest.size,
            etag=ingest.etag(),
            last_modified=time.time(),
            segments=segments,
            headers=spec.headers,
            checksums=checksums,
            tags=spec.tags,
            data=data,
        )
        return rec

    def _commit(
        self, bucket: Bucket, rec: ObjectRecord, conditions: Conditions, *,
        delete_old: bool = True,
    ) -> ObjectRecord | None:
        try:
            if conditions:
                old = self.repo.put_object(
                    bucket.account_id, rec, precondition=lambda e: check_write(conditions, e)
                )
            else:
                old = self.repo.put_object(bucket.account_id, rec)
        except BaseException:
            self.blobs.delete_many(rec.blob_ids)
            raise
        if old is not None and delete_old:
            self.blobs.delete_many(set(old.blob_ids) - set(rec.blob_ids))
        return old

    # reading ---------------------------------------------------------------------------
    def head(self, account: Account, bucket: str, key: str) -> ObjectRecord:
        rec = self._lookup(account, bucket, key)
        if rec is None:
            raise errors.NoSuchKey(Key=key)
        return rec

    def _lookup(self, account: Account, bucket: str, key: str) -> ObjectRecord | None:
        """The object, after the same tenancy checks as BucketService.owned (one query)."""
        b, rec = self.repo.get_bucket_and_object(bucket, key)
        if b is None:
            raise errors.NoSuchBucket(BucketName=bucket)
        if b.account_id != account.id:
            raise errors.AccessDenied()
        return rec

    def open(
        self,
        account: Account,
        bucket: str,
        key: str,
        *,
        conditions: Conditions = NO_CONDITIONS,
        range_header: str | None = None,
        part_number: int | None = None,
    ) -> tuple[ObjectReader, tuple[int, int] | None]:
        """Check conditions, resolve the range, open the bytes. Returns the reader and the
        (first, last) range served, or None for the whole object."""
        for _ in range(_OPEN_RETRIES):
            rec = self._lookup(account, bucket, key)
            if rec is None:
                raise errors.NoSuchKey(Key=key)
            check_read(conditions, rec)
            rng = self._resolve_range(rec, range_header, part_number)
            first, last = rng if rng is not None else (0, rec.size - 1)
            try:
                return ObjectReader.open(self.blobs, rec, first, last), rng
            except FileNotFoundError:
                continue  # replaced while we looked: look again
        raise errors.InternalError("The object kept changing while being read; try again.")

    def _resolve_range(
        self, rec: ObjectRecord, range_header: str | None, part_number: int | None
    ) -> tuple[int, int] | None:
        if part_number is not None:
            if range_header is not None:
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber")
            count = len(rec.segments) if rec.parts_count else 1
            if not 1 <= part_number <= count:
                raise errors.InvalidPartNumber(PartNumberRequested=str(part_number),
                                               ActualPartCount=str(count))
            if not rec.parts_count:
                return None
            start = sum(s.size for s in rec.segments[: part_number - 1])
            return start, start + rec.segments[part_number - 1].size - 1
        return parse_range(range_header, rec.size)

    # copying ---------------------------------------------------------------------------
    def copy(
        self,
        account: Account,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        source_conditions: Conditions,
        make_headers: Callable[[ObjectRecord], dict[str, str]],
        make_tags: Callable[[ObjectRecord], dict[str, str]],
        replacing_metadata: bool,
        conditions: Conditions = NO_CONDITIONS,
    ) -> ObjectRecord:
        """Copy an object. Blobs are immutable, so the copy shares their storage (hard links);
        the new object is committed like any write."""
        self.buckets.owned(account, src_bucket)
        dst = self.buckets.owned(account, dst_bucket)
        check_key(dst_key)
        for _ in range(_OPEN_RETRIES):
            src = self.repo.get_object(src_bucket, src_key)
            if src is None:
                raise errors.NoSuchKey(Key=src_key)
            check_copy_source(source_conditions, src)
            if (src_bucket, src_key) == (dst_bucket, dst_key) and not replacing_metadata:
                raise errors.InvalidRequest(
                    "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata, storage class, website "
                    "redirect location or encryption attributes."
                )
            try:
                segments = self._link_segments(src.segments)
            except FileNotFoundError:
                continue
            rec = replace(
                src,
                bucket=dst_bucket,
                key=dst_key,
                last_modified=time.time(),
                segments=segments,
                headers=make_headers(src),
                tags=make_tags(src),
            )
            self._commit(dst, rec, conditions)
            return rec
        raise errors.InternalError("The source object kept changing while being copied.")

    def _link_segments(self, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
        linked: list[Segment] = []
        try:
            for seg in segments:
                linked.append(Segment(self.blobs.link_copy(seg.blob_id), seg.size))
        except BaseException:
            self.blobs.delete_many(s.blob_id for s in linked)
            raise
        return tuple(linked)

    # deleting --------------------------------------------------------------------------
    def delete(self, account: Account, bucket: str, key: str) -> None:
        b = self.buckets.owned(account, bucket)
        self.delete_keys(b, [key])

    async def delete_async(self, account: Account, bucket: str, key: str) -> list[str]:
        """DeleteObject on the event loop; returns the freed blob ids for the caller to
        delete off the loop."""
        b = self.buckets.owned(account, bucket)
        deleted = await self.repo.delete_objects_async(b.account_id, b.name, [key])
        return [blob_id for rec in deleted for blob_id in rec.blob_ids]

    def delete_keys(self, bucket: Bucket, keys: list[str]) -> list[ObjectRecord]:
        deleted = self.repo.delete_objects(bucket.account_id, bucket.name, keys)
        for rec in deleted:
            self.blobs.delete_many(rec.blob_ids)
        return deleted

    # tagging ---------------------------------------------------------------------------
    def get_tags(self, account: Account, bucket: str, key: str) -> dict[str, str]:
        return self.head(account, bucket, key).tags

    def put_tags(self, account: Account, bucket: str, key: str, tags: dict[str, str]) -> None:
        self.buckets.owned(account, bucket)
        validate_tags(tags)
        if not self.repo.set_tags(bucket, key, tags):
            raise errors.NoSuchKey(Key=key)

    # listing ---------------------------------------------------------------------------
    def list(
        self,
        account: Account,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
    ) -> ListingPage:
        self.buckets.owned(account, bucket)
        return list_page(
            self.repo, bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
