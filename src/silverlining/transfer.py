"""The copy engine: every object of one S3 endpoint's bucket(s) to another's, with any two
endpoints and credentials (`silverlining copy`, and the market's `move`).

- **Streamed.** An object larger than one part is copied part by part (``part_size``, 8 MiB
  by default) with a multipart upload: at most ``workers`` parts are in memory, whatever the
  object's size.
- **Parallel.** ``workers`` objects (or parts of them) at a time.
- **Faithful.** Keys, bytes, content headers (Content-Type, -Encoding, -Language,
  -Disposition, Cache-Control, Expires), user metadata and tags are kept.
- **Verified.** The bytes read from the source are checked against its ETag when that is an
  MD5; the target receives each upload with its SHA-256 (``x-amz-checksum-sha256``, checked
  by the target on receipt) and is then asked for the stored size and checksum
  (``ChecksumMode=ENABLED``), which must equal what was sent.
- **Resumable.** A :class:`Journal` remembers each object copied (with the source's ETag and
  size); a rerun skips those, so an interrupted copy resumes where it stopped, and a rerun
  after the source changed copies just the changes (``delete_extra`` also removes objects
  gone from the source).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

PART_SIZE = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024
HEADERS = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition",
           "CacheControl", "Expires")


class CopyError(Exception):
    """The copy cannot go on; the message names the object and what went wrong."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"

    def client(self, pool: int = 16, timeout: float = 60.0) -> Any:
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                          retries={"mode": "standard", "max_attempts": 3},
                          connect_timeout=timeout, read_timeout=timeout,
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))


class Journal(Protocol):
    """What has been copied: ``(bucket, key)`` -> the source's (etag, size) at the time."""

    def done(self, bucket: str, key: str, etag: str, size: int) -> bool: ...

    def record(self, bucket: str, key: str, etag: str, size: int, checksum: str) -> None: ...

    def forget(self, bucket: str, key: str) -> None: ...


class MemoryJournal:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[str, int, str]] = {}
        self._lock = threading.Lock()

    def done(self, bucket: str, key: str, etag: str, size: int) -> bool:
        entry = self.entries.get((bucket, key))
        return entry is not None and entry[:2] == (etag, size)

    def record(self, bucket: str, key: str, etag: str, size: int, checksum: str) -> None:
        with self._lock:
            self.entries[(bucket, key)] = (etag, size, checksum)

    def forget(self, bucket: str, key: str) -> None:
        with self._lock:
            self.entries.pop((bucket, key), None)


class FileJournal(MemoryJournal):
    """A JSON-lines file: each copied object is appended (and flushed) as it completes."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash: that object is copied again
                key = (item["bucket"], item["key"])
                if item.get("forget"):
                    self.entries.pop(key, None)
                else:
                    self.entries[key] = (item["etag"], int(item["size"]), item["checksum"])
        self._file = path.open("a", encoding="utf-8")

    def _append(self, item: dict[str, Any]) -> None:
        self._file.write(json.dumps(item, ensure_ascii=False) + "\n")
        self._file.flush()

    def record(self, bucket: str, key: str, etag: str, size: int, checksum: str) -> None:
        with self._lock:
            self.entries[(bucket, key)] = (etag, size, checksum)
            self._append({"bucket": bucket, "key": key, "etag": etag, "size": size,
                          "checksum": checksum})

    def forget(self, bucket: str, key: str) -> None:
        with self._lock:
            self.entries.pop((bucket, key), None)
            self._append({"bucket": bucket, "key": key, "forget": True})

    def close(self) -> None:
        self._file.close()


@dataclass
class Progress:
    """Counters, updated from worker threads; ``on_change`` is called after each update."""

    objects_total: int = 0
    bytes_total: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_skipped: int = 0
    bytes_skipped: int = 0
    objects_deleted: int = 0
    on_change: Callable[[Progress], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)
        if self.on_change is not None:
            self.on_change(self)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in (
            "objects_total", "bytes_total", "objects_copied", "bytes_copied",
            "objects_skipped", "bytes_skipped", "objects_deleted")}


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    etag: str


def list_objects(client: Any, bucket: str) -> Iterator[SourceObject]:
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        for item in page.get("Contents", []):
            yield SourceObject(item["Key"], int(item["Size"]), item["ETag"].strip('"'))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def list_buckets(client: Any) -> list[str]:
    return [b["Name"] for b in client.list_buckets().get("Buckets", [])]


def ensure_bucket(client: Any, bucket: str, region: str) -> None:
    try:
        params: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(**params)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise CopyError(f"cannot create bucket {bucket!r} on the target: "
                            f"{_describe(error)}") from None


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return f"{type(error).__name__}: {error}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class _Halt:
    """Set by this copy when one of its objects fails (its other workers stop); also set
    when the caller's ``stop`` is. The caller's event is only read, never set: it may be
    shared by other copies (the market's moves share one)."""

    def __init__(self, stop: threading.Event | None) -> None:
        self._own = threading.Event()
        self._stop = stop

    def set(self) -> None:
        self._own.set()

    def is_set(self) -> bool:
        return self._own.is_set() or (self._stop is not None and self._stop.is_set())


class _Copier:
    def __init__(self, src: Any, dst: Any, part_size: int, stop: _Halt) -> None:
        self.src, self.dst, self.part_size, self.stop = src, dst, part_size, stop

    def copy(self, src_bucket: str, obj: SourceObject, dst_bucket: str) -> str:
        """Copy one object; returns the SHA-256 checksum the target stored."""
        got = self.src.get_object(Bucket=src_bucket, Key=obj.key)
        if got.get("ETag", "").strip('"') != obj.etag or int(got["ContentLength"]) != obj.size:
            raise _Changed(obj.key)
        extra: dict[str, Any] = {k: got[k] for k in HEADERS if got.get(k) is not None}
        if got.get("Metadata"):
            extra["Metadata"] = got["Metadata"]
        tags = self.src.get_object_tagging(Bucket=src_bucket, Key=obj.key).get("TagSet", [])
        if tags:
            extra["Tagging"] = urllib.parse.urlencode([(t["Key"], t["Value"]) for t in tags])
        body = got["Body"]
        md5 = hashlib.md5()
        try:
            if obj.size <= self.part_size:
                data = _read(body, obj.size)
                md5.update(data)
                self._check_source(md5, obj)
                digest = _b64(hashlib.sha256(data).digest())
                self.dst.put_object(Bucket=dst_bucket, Key=obj.key, Body=data,
                                    ContentLength=len(data), ChecksumSHA256=digest, **extra)
                expected = digest
            else:
                expected = self._multipart(body, md5, obj, dst_bucket, extra)
        finally:
            body.close()
        head = self.dst.head_object(Bucket=dst_bucket, Key=obj.key, ChecksumMode="ENABLED")
        stored = head.get("ChecksumSHA256")
        if int(head["ContentLength"]) != obj.size or stored != expected:
            raise CopyError(f"{dst_bucket}/{obj.key}: the target holds {head['ContentLength']} "
                            f"bytes with SHA-256 {stored}; sent {obj.size} with {expected}")
        return expected

    def _check_source(self, md5: Any, obj: SourceObject) -> None:
        if "-" not in obj.etag and len(obj.etag) == 32 and md5.hexdigest() != obj.etag:
            raise CopyError(f"{obj.key}: the bytes read from the source do not match its "
                            "ETag (MD5)")

    def _multipart(self, body: Any, md5: Any, obj: SourceObject, bucket: str,
                   extra: dict[str, Any]) -> str:
        upload = self.dst.create_multipart_upload(Bucket=bucket, Key=obj.key,
                                                  ChecksumAlgorithm="SHA256", **extra)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        digests = b""
        remaining = obj.size
        try:
            number = 1
            while remaining > 0:
                if self.stop.is_set():
                    raise CopyError("stopped")
                data = _read(body, min(self.part_size, remaining))
                md5.update(data)
                digest = hashlib.sha256(data).digest()
                digests += digest
                self.dst.upload_part(Bucket=bucket, Key=obj.key, UploadId=upload_id,
                                     PartNumber=number, Body=data, ContentLength=len(data),
                                     ChecksumSHA256=_b64(digest))
                parts.append({"PartNumber": number, "ChecksumSHA256": _b64(digest)})
                remaining -= len(data)
                number += 1
            self._check_source(md5, obj)
            self._complete(bucket, obj.key, upload_id, parts)
        except BaseException:
            # If the abort fails too, the upload is left for the target's own cleanup.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.dst.abort_multipart_upload(Bucket=bucket, Key=obj.key, UploadId=upload_id)
            raise
        return f"{_b64(hashlib.sha256(digests).digest())}-{len(parts)}"

    def _complete(self, bucket: str, key: str, upload_id: str,
                  parts: list[dict[str, Any]]) -> Any:
        listed = self.dst.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        etags = {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}
        return self.dst.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{**p, "ETag": etags[p["PartNumber"]]} for p in parts]})


class _Changed(Exception):
    """The source object changed between listing and reading: the next pass takes it."""


def _read(body: Any, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = body.read(min(READ_CHUNK, size - len(out)))
        if not chunk:
            raise CopyError(f"the source sent {len(out)} of {size} bytes")
        out += chunk
    return bytes(out)


def copy_bucket(src: Endpoint, dst: Endpoint, src_bucket: str, dst_bucket: str | None = None,
                *, journal: Journal | None = None, workers: int = 8,
                part_size: int = PART_SIZE, progress: Progress | None = None,
                delete_extra: bool = False, stop: threading.Event | None = None,
                create: bool = True) -> Progress:
    """Copy every object of ``src_bucket`` to ``dst_bucket`` (same name by default).

    Raises :class:`CopyError` when an object cannot be copied or verified; what was copied
    before stays in the journal, so a rerun resumes.
    """
    target = dst_bucket or src_bucket
    log = journal or MemoryJournal()
    seen = progress or Progress()
    halt = _Halt(stop)
    src_client, dst_client = src.client(workers * 2), dst.client(workers * 2)
    try:
        if create:
            ensure_bucket(dst_client, target, dst.region)
        copier = _Copier(src_client, dst_client, part_size, halt)
        listed: set[str] = set()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
            pending: set[Future[None]] = set()
            for obj in list_objects(src_client, src_bucket):
                if halt.is_set():
                    break
                listed.add(obj.key)
                seen.add(objects_total=1, bytes_total=obj.size)
                if log.done(src_bucket, obj.key, obj.etag, obj.size):
                    seen.add(objects_skipped=1, bytes_skipped=obj.size)
                    continue
                pending.add(pool.submit(_one, copier, log, seen, src_bucket, obj, target))
                if len(pending) >= workers * 4:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    _raise_first(done, halt)
            done, _ = wait(pending)
            _raise_first(done, halt)
        if delete_extra and not halt.is_set():
            for obj in list(list_objects(dst_client, target)):
                if obj.key not in listed:
                    dst_client.delete_object(Bucket=target, Key=obj.key)
                    log.forget(src_bucket, obj.key)
                    seen.add(objects_deleted=1)
    except (ClientError, BotoCoreError) as error:
        halt.set()
        raise CopyError(f"{src_bucket}: {_describe(error)}") from None
    finally:
        src_client.close()
        dst_client.close()
    return seen


def _one(copier: _Copier, log: Journal, seen: Progress, bucket: str, obj: SourceObject,
         target: str) -> None:
    try:
        checksum = copier.copy(bucket, obj, target)
    except _Changed:
        return  # not recorded: the final pass copies what it is now
    except (ClientError, BotoCoreError) as error:
        raise CopyError(f"{bucket}/{obj.key}: {_describe(error)}") from None
    log.record(bucket, obj.key, obj.etag, obj.size, checksum)
    seen.add(objects_copied=1, bytes_copied=obj.size)


def _raise_first(done: set[Future[None]], halt: _Halt) -> None:
    for future in done:
        error = future.exception()
        if error is not None:
            halt.set()
            raise error


def copy_all(src: Endpoint, dst: Endpoint, *, journal: Journal | None = None,
             workers: int = 8, part_size: int = PART_SIZE, progress: Progress | None = None,
             delete_extra: bool = False, stop: threading.Event | None = None) -> Progress:
    """Every bucket of the source account, to same-named buckets of the target account."""
    client = src.client()
    try:
        buckets = list_buckets(client)
    except (ClientError, BotoCoreError) as error:
        raise CopyError(f"cannot list the source's buckets: {_describe(error)}") from None
    finally:
        client.close()
    seen = progress or Progress()
    for bucket in buckets:
        copy_bucket(src, dst, bucket, journal=journal, workers=workers, part_size=part_size,
                    progress=seen, delete_extra=delete_extra, stop=stop)
    return seen
