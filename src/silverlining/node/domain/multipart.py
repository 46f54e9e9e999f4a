"""Multipart uploads: parts are blobs; completion commits an object made of them (no copy).

https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field

from silverlining.node import errors
from silverlining.node.domain.buckets import BucketService
from silverlining.node.domain.checksums import composite
from silverlining.node.domain.conditions import (
    NO_CONDITIONS,
    Conditions,
    check_copy_source,
    check_write,
)
from silverlining.node.domain.limits import Limits
from silverlining.node.domain.model import Account, ObjectRecord, Part, Segment, Upload
from silverlining.node.domain.names import check_key
from silverlining.node.domain.streams import Ingest, ObjectReader
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.objects import ObjectRepository


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """A part as named in a CompleteMultipartUpload request."""

    part_number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UploadListing:
    uploads: list[Upload] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False


def multipart_etag(part_etags: list[str]) -> str:
    md5 = hashlib.md5()
    for etag in part_etags:
        md5.update(bytes.fromhex(etag.strip('"')))
    return f'"{md5.hexdigest()}-{len(part_etags)}"'


class MultipartService:
    def __init__(
        self, repo: ObjectRepository, blobs: BlobStore, buckets: BucketService, limits: Limits
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.buckets = buckets
        self.limits = limits

    def create(
        self,
        account: Account,
        bucket: str,
        key: str,
        *,
        headers: dict[str, str],
        tags: dict[str, str],
        checksum_algorithm: str | None,
        checksum_type: str | None,
    ) -> Upload:
        self.buckets.owned(account, bucket)
        check_key(key)
        upload = Upload(
            upload_id=secrets.token_urlsafe(48),
            bucket=bucket,
            key=key,
            account_id=account.id,
            initiated=time.time(),
            headers=headers,
            tags=tags,
            checksum_algorithm=checksum_algorithm,
            checksum_type=checksum_type,
        )
        self.repo.create_upload(upload)
        return upload

    def find(self, account: Account, bucket: str, key: str, upload_id: str) -> Upload:
        self.buckets.owned(account, bucket)
        upload = self.repo.get_upload(upload_id)
        if upload is None or upload.bucket != bucket or upload.key != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return upload

    def check_part_number(self, part_number: int) -> None:
        if not 1 <= part_number <= self.limits.max_parts:
            raise errors.InvalidArgument(
                f"Part number must be an integer between 1 and {self.limits.max_parts}, "
                "inclusive",
                ArgumentName="partNumber",
                ArgumentValue=str(part_number),
            )

    def commit_part(
        self,
        upload: Upload,
        part_number: int,
        ingest: Ingest,
        *,
        content_md5: str | None,
        checksum: str | None,
    ) -> Part:
        try:
            ingest.verify(content_md5=content_md5, checksum=checksum)
            segments, _ = ingest.commit()
            (segment,) = segments
        except BaseException:
            ingest.discard()
            raise
        checksums: dict[str, str] = {}
        value = ingest.digests.checksum_b64()
        if value is not None and ingest.digests.checksum_algorithm:
            checksums[ingest.digests.checksum_algorithm] = value
        part = Part(part_number, segment.blob_id, segment.size, ingest.etag(), time.time(),
                    checksums)
        self._record_part(upload, part)
        return part

    def _record_part(self, upload: Upload, part: Part) -> None:
        try:
            replaced = self.repo.put_part(upload.upload_id, part)
        except BaseException:
            self.blobs.delete(part.blob_id)
            raise
        if replaced is not None:
            self.blobs.delete(replaced)

    def copy_part(
        self,
        account: Account,
        upload: Upload,
        part_number: int,
        *,
        src_bucket: str,
        src_key: str,
        source_range: str | None,
        source_conditions: Conditions,
    ) -> Part:
        """UploadPartCopy: the part's bytes are (a range of) another object's."""
        self.buckets.owned(account, src_bucket)
        src = self.repo.get_object(src_bucket, src_key)
        if src is None:
            raise errors.NoSuchKey(Key=src_key)
        check_copy_source(source_conditions, src)
        first, last = 0, src.size - 1
        if source_range is not None:
            first, last = _parse_copy_range(source_range, src.size)
        if last - first + 1 > self.limits.max_part_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.limits.max_part_size))
        ingest = Ingest(self.blobs, max_size=self.limits.max_part_size)
        try:
            reader = ObjectReader.open(self.blobs, src, first, last) if src.size else None
        except FileNotFoundError:
            ingest.discard()
            raise errors.InternalError("The source object changed while being copied.") from None
        try:
            if reader is not None:
                while chunk := reader.read():
                    ingest.write(chunk)
            (segment,), _ = ingest.commit()
        except BaseException:
            ingest.discard()
            raise
        finally:
            if reader is not None:
                reader.close()
        part = Part(part_number, segment.blob_id, segment.size, ingest.etag(), time.time())
        self._record_part(upload, part)
        return part

    def complete(
        self,
        account: Account,
        upload: Upload,
        requested: list[CompletedPart],
        conditions: Conditions = NO_CONDITIONS,
    ) -> ObjectRecord:
        bucket = self.buckets.owned(account, upload.bucket)
        if not requested:
            raise errors.MalformedXML(
                "You must specify at least one part in CompleteMultipartUpload."
            )
        numbers = [p.part_number for p in requested]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise errors.InvalidPartOrder()
        stored = {p.part_number: p for p in self.repo.list_parts(upload.upload_id)}
        chosen: list[Part] = []
        for req in requested:
            part = stored.get(req.part_number)
            if part is None or part.etag.strip('"') != req.etag.strip().strip('"'):
                raise errors.InvalidPart(PartNumber=str(req.part_number), ETag=req.etag)
            for alg, value in req.checksums.items():
                if part.checksums.get(alg) not in (None, value):
                    raise errors.InvalidPart(
                        f"The {alg} checksum of part {req.part_number} does not match.",
                        PartNumber=str(req.part_number),
                    )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self.limits.min_part_size:
                raise errors.EntityTooSmall(
                    ProposedSize=str(part.size),
                    MinSizeAllowed=str(self.limits.min_part_size),
                    PartNumber=str(part.part_number),
                    ETag=part.etag,
                )
        size = sum(p.size for p in chosen)
        if size > self.limits.max_object_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.limits.max_object_size))
        checksums: dict[str, str] = {}
        algorithm = upload.checksum_algorithm
        if algorithm and all(algorithm in p.checksums for p in chosen):
            checksums = {
                algorithm: composite(algorithm, [p.checksums[algorithm] for p in chosen]),
                "type": "COMPOSITE",
            }
        rec = ObjectRecord(
            bucket=upload.bucket,
            key=upload.key,
            size=size,
            etag=multipart_etag([p.etag for p in chosen]),
            last_modified=time.time(),
            segments=tuple(Segment(p.blob_id, p.size) for p in chosen),
            headers=upload.headers,
            checksums=checksums,
            tags=upload.tags,
            parts_count=len(chosen),
        )
        old, unused = self.repo.complete_upload(
            bucket.account_id,
            upload.upload_id,
            rec,
            precondition=(lambda e: check_write(conditions, e)) if conditions else None,
        )
        self.blobs.delete_many(unused)
        if old is not None:
            self.blobs.delete_many(set(old.blob_ids) - set(rec.blob_ids))
        return rec

    def abort(self, account: Account, upload: Upload) -> None:
        self.buckets.owned(account, upload.bucket)
        self.blobs.delete_many(self.repo.abort_upload(upload.upload_id))

    def list_parts(
        self, upload: Upload, *, after: int, max_parts: int
    ) -> tuple[list[Part], bool]:
        parts = self.repo.list_parts(upload.upload_id, after=after, limit=max_parts + 1)
        return parts[:max_parts], len(parts) > max_parts

    def list_uploads(
        self,
        account: Account,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> UploadListing:
        self.buckets.owned(account, bucket)
        out = UploadListing()
        if max_uploads <= 0:
            return out
        km: str = key_marker
        um: str = upload_id_marker if key_marker else ""
        if prefix > km:
            km, um = prefix, ""
            # include uploads whose key equals the prefix itself
            km_inclusive = True
        else:
            km_inclusive = False
        count = 0
        while True:
            batch = self.repo.list_uploads(bucket, km, um, 1000, inclusive=km_inclusive)
            km_inclusive = False
            if not batch:
                return out
            for up in batch:
                if not up.key.startswith(prefix):
                    if up.key > prefix:
                        return out
                    continue
                cp = None
                if delimiter:
                    i = up.key.find(delimiter, len(prefix))
                    if i >= 0:
                        cp = up.key[: i + len(delimiter)]
                if cp is not None and out.common_prefixes and out.common_prefixes[-1] == cp:
                    continue
                if count >= max_uploads:
                    out.truncated = True
                    return out
                if cp is not None:
                    out.common_prefixes.append(cp)
                else:
                    out.uploads.append(up)
                count += 1
            km, um = batch[-1].key, batch[-1].upload_id


def _parse_copy_range(value: str, size: int) -> tuple[int, int]:
    spec = value.strip()
    try:
        if not spec.startswith("bytes="):
            raise ValueError
        first_s, _, last_s = spec[6:].partition("-")
        first, last = int(first_s), int(last_s)
    except ValueError:
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        ) from None
    if first < 0 or last < first or last >= size:
        raise errors.InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    return first, last
