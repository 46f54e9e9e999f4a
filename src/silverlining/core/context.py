"""Where checks run: the target endpoint, the clients, and a per-check context.

A :class:`Session` belongs to one run. It holds the boto3 clients (shared by all worker threads;
botocore clients are thread-safe), the run id that prefixes every bucket Core creates, and the
provider's clock offset. A :class:`CheckContext` belongs to one check: it creates uniquely named
buckets, undoes everything on the way out, and turns expectations into evidence.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import random
import re
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from silverlining.core import rawhttp
from silverlining.core.evidence import (
    CheckFailed,
    CheckSkipped,
    Evidence,
    clip,
    first_difference,
    last_request,
    record_request,
    show_bytes,
)
from silverlining.core.rawhttp import Credentials, RawResponse
from silverlining.core.registry import Check

#: A boto3 S3 client (boto3 is untyped).
S3Client: TypeAlias = Any

#: Every bucket Core creates starts with this, then the run id.
BUCKET_PREFIX = "core-"

ADDRESSING_STYLES = ("path", "virtual")


class TargetError(Exception):
    """The endpoint cannot be checked at all (unreachable, credentials refused)."""


@dataclass(frozen=True)
class Target:
    """The S3 endpoint under test and the accounts Core may use on it."""

    endpoint: str
    credentials: Credentials
    region: str = "us-east-1"
    alt_credentials: Credentials | None = None
    addressing: str = "path"
    ca_bundle: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http:// or https:// URL, not {self.endpoint!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"endpoint must not have a path or query: {self.endpoint!r}")
        if self.addressing not in ADDRESSING_STYLES:
            raise ValueError(f"addressing must be one of {ADDRESSING_STYLES}")
        if not self.region:
            raise ValueError("region must not be empty")

    @property
    def base_url(self) -> str:
        return self.endpoint.rstrip("/")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.base_url.startswith("https"):
            return None
        return ssl.create_default_context(cafile=self.ca_bundle)


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


def _record_boto_request(request: Any, **_: Any) -> None:
    """botocore ``before-send`` hook: remember the request for evidence (returns None)."""
    parts = urlsplit(str(request.url))
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {_text(k): _text(v) for k, v in request.headers.items()}
    length = next((v for k, v in headers.items() if k.lower() == "content-length"), "")
    body = request.body
    if isinstance(body, bytes | bytearray) and body:
        note = show_bytes(bytes(body))
    elif length and length != "0":
        note = f"{length} bytes"
    else:
        note = ""
    record_request(str(request.method), target, headers, note)


def make_client(target: Target, credentials: Credentials, max_connections: int = 16) -> S3Client:
    """A boto3 S3 client for ``target``, configured for conformance testing.

    No retries: Core judges the provider's first answer. Checksums are only computed and
    validated when an operation requires them or a check asks, so basic checks do not depend on
    the flexible-checksum feature, which has checks of its own.
    """
    config = Config(
        region_name=target.region,
        signature_version="s3v4",
        s3={"addressing_style": target.addressing},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=min(target.timeout, 10.0),
        read_timeout=target.timeout,
        max_pool_connections=max_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="silverlining-core",
    )
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        region_name=target.region,
    )
    client = session.client(
        "s3",
        endpoint_url=target.base_url,
        config=config,
        verify=target.ca_bundle if target.ca_bundle else True,
    )
    client.meta.events.register("before-send.s3", _record_boto_request)
    return client


def describe_client_error(error: ClientError) -> str:
    """``HTTP 404 NoSuchKey: The specified key does not exist.`` for evidence."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    code = error.response.get("Error", {}).get("Code", "?")
    message = error.response.get("Error", {}).get("Message", "")
    return f"HTTP {status} {code}" + (f": {message}" if message else "")


def error_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def quoted_md5(data: bytes) -> str:
    """The ETag S3 gives a single-part object: its MD5 in hex, in double quotes."""
    return f'"{hashlib.md5(data).hexdigest()}"'


def create_bucket_params(bucket: str, region: str) -> dict[str, Any]:
    """CreateBucket parameters: outside us-east-1, S3 wants the region as LocationConstraint."""
    params: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return params


def remove_bucket(client: S3Client, bucket: str) -> None:
    """Abort uploads, delete every object, then delete ``bucket``. Raises on the last step.

    A bucket that no longer exists counts as removed.
    """
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error_status(error) in (400, 404):  # gone, or a name that cannot exist
            return
    try:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    except ClientError:
        pass  # a provider without ListMultipartUploads can still lose the bucket
    token: str | None = None
    for _ in range(1000):  # a provider that truncates forever must not hang Core
        extra = {"ContinuationToken": token} if token else {}
        page = client.list_objects_v2(Bucket=bucket, **extra)
        keys = [item["Key"] for item in page.get("Contents", [])]
        if keys:
            try:
                client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
                )
            except ClientError:
                for key in keys:
                    client.delete_object(Bucket=bucket, Key=key)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    client.delete_bucket(Bucket=bucket)


class Session:
    """One run against one target: shared clients, the run id, the provider's clock."""

    def __init__(self, target: Target, *, run_id: str | None = None, workers: int = 8) -> None:
        self.target = target
        self.run_id = run_id or secrets.token_hex(4)
        connections = max(16, workers * 4)
        self.s3 = make_client(target, target.credentials, connections)
        self.alt_s3: S3Client | None = (
            make_client(target, target.alt_credentials, connections)
            if target.alt_credentials
            else None
        )
        self.clock_offset = dt.timedelta(0)
        self._counter = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the clients' connection pools."""
        for client in (self.s3, self.alt_s3):
            if client is not None:
                client.close()

    def bucket_name(self, hint: str) -> str:
        """A bucket name unique to this run: ``core-<run id>-<n>-<hint>``, at most 63 chars."""
        with self._lock:
            self._counter += 1
            number = self._counter
        slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")
        name = f"{BUCKET_PREFIX}{self.run_id}-{number:03d}-{slug}"[:63]
        return name.rstrip("-")

    def server_now(self) -> dt.datetime:
        """Our best estimate of the provider's clock (naive UTC), from its ``Date`` headers."""
        return rawhttp.utcnow() + self.clock_offset

    def preflight(self) -> None:
        """Prove the endpoint answers S3 and accepts the credentials; learn its clock.

        Raises :class:`TargetError` with a one-line message otherwise.
        """
        clients = [("credentials", self.s3)]
        if self.alt_s3 is not None:
            clients.append(("alternate credentials", self.alt_s3))
        for label, client in clients:
            before = rawhttp.utcnow()
            try:
                response = client.list_buckets()
            except ClientError as error:
                if error_code(error) in {
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                    "InvalidClientTokenId",
                }:
                    why = describe_client_error(error)
                    where = self.target.base_url
                    raise TargetError(f"{where} refused the {label}: {why}") from None
                raise TargetError(
                    f"{self.target.base_url} did not answer ListBuckets: "
                    f"{describe_client_error(error)}"
                ) from None
            except BotoCoreError as error:
                raise TargetError(f"cannot reach {self.target.base_url}: {error}") from None
            after = rawhttp.utcnow()
            date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
            if date and client is self.s3:
                try:
                    server = email.utils.parsedate_to_datetime(date)
                except (TypeError, ValueError):
                    continue
                # Date has whole seconds: the server's clock was on average half a second on.
                server_time = server.astimezone(dt.UTC).replace(tzinfo=None)
                local = before + (after - before) / 2
                self.clock_offset = server_time + dt.timedelta(seconds=0.5) - local

    def sweep(self) -> list[str]:
        """Delete buckets of this run that checks could not delete. Returns those left behind."""
        left: list[str] = []
        prefix = f"{BUCKET_PREFIX}{self.run_id}-"
        for client in (self.s3, self.alt_s3):
            if client is None:
                continue
            try:
                names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
            except (ClientError, BotoCoreError):
                continue
            for name in names:
                if name.startswith(prefix):
                    try:
                        remove_bucket(client, name)
                    except (ClientError, BotoCoreError):
                        left.append(name)
        return sorted(set(left))


@dataclass
class _Cleanup:
    description: str
    action: Callable[[], object]


@dataclass
class CheckContext:
    """What a check sees: clients, bucket factory, cleanup stack and expectation helpers."""

    session: Session
    check: Check
    notes: list[str] = field(default_factory=list)
    _cleanups: list[_Cleanup] = field(default_factory=list)

    def __post_init__(self) -> None:
        seed = hashlib.sha256(f"{self.session.run_id}/{self.check.id}".encode()).digest()
        self.random = random.Random(seed)

    # -- clients -------------------------------------------------------------------------

    @property
    def target(self) -> Target:
        return self.session.target

    @property
    def s3(self) -> S3Client:
        """The client of the primary account."""
        return self.session.s3

    @property
    def alt(self) -> S3Client:
        """The client of the alternate account; skips the check when there is none."""
        if self.session.alt_s3 is None:
            raise CheckSkipped("needs an alternate account (--alt-access-key/--alt-secret-key)")
        return self.session.alt_s3

    # -- resources ------------------------------------------------------------------------

    def new_bucket(self, client: S3Client | None = None, hint: str = "") -> str:
        """Create a bucket with a unique name; it is emptied and deleted when the check ends."""
        owner = client if client is not None else self.s3
        name = self.bucket_name(hint)
        self.defer(f"delete bucket {name}", lambda: remove_bucket(owner, name))
        owner.create_bucket(**create_bucket_params(name, self.target.region))
        return name

    def bucket_name(self, hint: str = "") -> str:
        """A unique bucket name, not created."""
        return self.session.bucket_name(hint or self.check.id.split(".", 1)[1])

    def put(self, bucket: str, key: str, body: bytes, **params: Any) -> dict[str, Any]:
        """PutObject with the primary account; returns boto3's response."""
        response: dict[str, Any] = self.s3.put_object(Bucket=bucket, Key=key, Body=body, **params)
        return response

    def put_many(self, bucket: str, objects: dict[str, bytes]) -> None:
        """PutObject each of ``objects`` (a few at a time: listings need many small objects)."""
        with ThreadPoolExecutor(max_workers=6, thread_name_prefix="core-put") as pool:
            futures = [pool.submit(self.put, bucket, k, v) for k, v in objects.items()]
            for future in futures:
                future.result()

    def get(
        self, bucket: str, key: str, client: S3Client | None = None, **params: Any
    ) -> tuple[bytes, dict[str, Any]]:
        """GetObject; returns the whole body and boto3's response."""
        response: dict[str, Any] = (client or self.s3).get_object(Bucket=bucket, Key=key, **params)
        return response["Body"].read(), response

    def defer(self, description: str, action: Callable[[], object]) -> None:
        """Run ``action`` when the check ends, whatever the outcome (last deferred runs first)."""
        self._cleanups.append(_Cleanup(description, action))

    def cleanup(self) -> None:
        """Run deferred actions; failures become notes, never exceptions."""
        while self._cleanups:
            item = self._cleanups.pop()
            try:
                item.action()
            except Exception as error:  # cleanup must go on whatever the provider does
                if isinstance(error, ClientError):
                    why = describe_client_error(error)
                else:
                    why = f"{type(error).__name__}: {error}"
                self.notes.append(clip(f"cleanup: could not {item.description}: {why}", 400))

    def random_bytes(self, size: int) -> bytes:
        return self.random.randbytes(size)

    # -- raw HTTP -------------------------------------------------------------------------

    def url(self, bucket: str, key: str | None = None, query: str = "") -> str:
        return rawhttp.object_url(self.target.base_url, bucket, key, query)

    def send(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> RawResponse:
        return rawhttp.send(
            method,
            url,
            headers,
            body,
            timeout=self.target.timeout,
            ssl_context=self.target.ssl_context(),
        )

    def send_signed(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        credentials: Credentials | None = None,
        at: dt.datetime | None = None,
        payload_hash: str | None = None,
    ) -> RawResponse:
        """Sign with SigV4 and send; by default as the primary account, on our own clock."""
        signed = rawhttp.sign(
            method,
            url,
            credentials or self.target.credentials,
            self.target.region,
            headers=headers,
            body=body,
            payload_hash=payload_hash,
            at=at,
        )
        return self.send(method, url, signed.headers, body)

    # -- expectations -----------------------------------------------------------------------

    def fail(self, expected: str, got: str, request: str | None = None) -> NoReturn:
        """End the check as failed with evidence; ``request`` defaults to the last one sent."""
        raise CheckFailed(Evidence(clip(request or last_request(), 800), clip(expected), clip(got)))

    def expect(self, condition: bool, expected: str, got: str, request: str | None = None) -> None:
        if not condition:
            self.fail(expected, got, request)

    def expect_equal(
        self, actual: object, expected: object, what: str, request: str | None = None
    ) -> None:
        if actual != expected:
            self.fail(f"{what} = {expected!r}", f"{what} = {actual!r}", request)

    def expect_bytes(
        self, actual: bytes, expected: bytes, what: str, request: str | None = None
    ) -> None:
        if actual != expected:
            self.fail(
                f"{what}: {show_bytes(expected)}",
                f"{what}: {show_bytes(actual)}; {first_difference(actual, expected)}",
                request,
            )

    def expect_error(
        self,
        call: Callable[[], object],
        status: int,
        codes: str | Iterable[str] | None,
        what: str,
    ) -> ClientError:
        """Run a boto3 call that must fail with ``status`` and one of ``codes``."""
        wanted = {codes} if isinstance(codes, str) else set(codes or ())
        expected = f"{what} rejected with HTTP {status}" + (
            f" {' or '.join(sorted(wanted))}" if wanted else ""
        )
        try:
            result = call()
        except ClientError as error:
            if error_status(error) != status or (wanted and error_code(error) not in wanted):
                self.fail(expected, describe_client_error(error))
            return error
        got = "success"
        if isinstance(result, dict):
            got += f" (HTTP {result.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')})"
        self.fail(expected, got)

    def expect_status(
        self,
        response: RawResponse,
        status: int | Iterable[int],
        codes: str | Iterable[str] | None = None,
        what: str = "the request",
    ) -> None:
        """A raw response must have one of the ``status`` values and an error code in ``codes``."""
        statuses = {status} if isinstance(status, int) else set(status)
        wanted = {codes} if isinstance(codes, str) else set(codes or ())
        if response.status in statuses and (not wanted or response.error_code in wanted):
            return
        shown = " or ".join(str(s) for s in sorted(statuses))
        expected = f"{what}: HTTP {shown}" + (f" {' or '.join(sorted(wanted))}" if wanted else "")
        self.fail(expected, response.describe())
