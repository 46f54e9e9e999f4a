"""The S3 REST front: addressing, authentication, dispatch to handlers, errors on the wire.

Every response carries ``x-amz-request-id``; every failure is S3's error XML with the status
of its error class (HEAD responses carry no body, as S3's don't).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from silverlining.node import errors
from silverlining.node.accesslog import AccessLog
from silverlining.node.domain.model import Account
from silverlining.node.protocol.s3 import router
from silverlining.node.protocol.s3.body import ClientDisconnected, RequestBody
from silverlining.node.protocol.s3.handlers import buckets, config, multipart, objects
from silverlining.node.protocol.s3.request import Response, S3Request
from silverlining.node.protocol.s3.serializer import S3Serializer, error_xml
from silverlining.node.protocol.sigv2 import V2Verifier, is_sigv2
from silverlining.node.protocol.sigv4 import Verifier
from silverlining.node.runtime import Node

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[S3Request], Awaitable[Response]]

log = logging.getLogger("silverlining.node.s3")

HANDLERS: dict[str, Handler] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "ListObjects": buckets.list_objects,
    "ListObjectsV2": buckets.list_objects_v2,
    "DeleteObjects": buckets.delete_objects,
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "CopyObject": objects.copy_object,
    "GetObjectTagging": objects.get_object_tagging,
    "PutObjectTagging": objects.put_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListParts": multipart.list_parts,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "GetBucketAcl": config.get_bucket_acl,
    "GetObjectAcl": config.get_object_acl,
    "GetBucketRequestPayment": config.get_bucket_request_payment,
    "GetBucketOwnershipControls": config.get_bucket_ownership_controls,
    "GetBucketLogging": config.get_bucket_logging,
    "GetBucketAccelerateConfiguration": config.get_bucket_accelerate,
    "GetBucketNotificationConfiguration": config.get_bucket_notification,
    "GetBucketUnconfigured": config.get_bucket_unconfigured,
    "PutBucketAcl": config.put_bucket_acl,
    "PutObjectAcl": config.put_object_acl,
}

#: Bodies up to this size are read and dropped after an error, so the connection stays
#: usable; beyond it the connection is closed instead.
_DRAIN_LIMIT = 16 * 1024 * 1024
_STREAM_CHUNK = 1024 * 1024


def _request_id() -> str:
    return secrets.token_hex(8).upper()


class S3Front:
    def __init__(self, node: Node, executor: ThreadPoolExecutor,
                 access_log: AccessLog | None = None) -> None:
        self.node = node
        self.access_log = access_log or AccessLog(enabled=False)
        self.executor = executor
        self.serializer = S3Serializer()
        self.verifier = Verifier(self._secret_for)
        self.v2_verifier = V2Verifier(self._secret_for)
        self._base_domains = tuple("." + d.lower() for d in node.config.base_domains)
        # Filled by _secret_for during authenticate(); read right after, on the same task.
        self._last_account: Account | None = None

    def _secret_for(self, access_key_id: str) -> str | None:
        found = self.node.accounts.authenticate_key(access_key_id)
        if found is None:
            self._last_account = None
            return None
        self._last_account, secret = found
        return secret

    def address(self, raw_path: bytes, host: str) -> tuple[str, str, bool]:
        """(bucket, key, virtual host?) from virtual-hosted-style or path-style addressing."""
        try:
            path = urllib.parse.unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidURI("The request path is not valid UTF-8.") from None
        host = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
        for suffix in self._base_domains:
            if host.endswith(suffix) and len(host) > len(suffix):
                return host[: -len(suffix)], path[1:], True
        bucket, _, key = path[1:].partition("/")
        return bucket, key, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = _request_id()
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query_string: bytes = scope.get("query_string", b"")
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers: dict[str, str] = {}
        for k, v in raw_headers:
            name = k.decode("latin-1")
            value = v.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        resource = raw_path.decode("latin-1")
        body: RequestBody | None = None
        account_name = "-"
        account: Account | None = None
        op: str | None = None
        try:
            bucket, key, vhost = self.address(raw_path, headers.get("host", ""))
            resource = "/" + bucket + ("/" + key if key else "") if bucket else "/"
            self._last_account = None
            if is_sigv2(headers, query_string):
                auth = self.v2_verifier.authenticate(method, raw_path, query_string, headers,
                                                     bucket, vhost)
            else:
                auth = self.verifier.authenticate(method, raw_path, query_string, raw_headers)
            account = self._last_account
            if account is None:  # pragma: no cover - the verifier only succeeds via lookup
                raise errors.InvalidAccessKeyId()
            account_name = account.name
            try:
                query = dict(urllib.parse.parse_qsl(
                    query_string.decode("utf-8"), keep_blank_values=True,
                    errors="strict", max_num_fields=200,
                ))
            except (UnicodeDecodeError, ValueError):
                raise errors.InvalidURI("The query string is not valid.") from None
            op = router.operation(method, bucket, key, query, headers)
            if method not in router.METHODS or (op is None and not bucket):
                raise errors.MethodNotAllowed(Method=method, ResourceType="SERVICE"
                                              if not bucket else "OBJECT")
            if op is None:
                raise errors.NotImplementedYet(
                    f"{method} {resource} with these parameters is not implemented by this "
                    "node."
                )
            body = RequestBody(receive, headers, auth,
                               idle_timeout=self.node.config.body_timeout)
            req = S3Request(self.node, self.serializer, self.executor, method, bucket, key,
                            query, headers, account, auth, body, request_id)
            response = await HANDLERS[op](req)
        except errors.S3Error as exc:
            response = await self._error_response(exc, resource, request_id, method, body,
                                                  headers)
        except ClientDisconnected:
            self._log(method, resource, 499, request_id, account_name, started)
            if account is not None and op is not None:
                self.node.meter.record(account.id, op, body.received if body else 0, 0)
            return
        except Exception:
            log.exception("internal error serving %s %s (request %s)", method, resource,
                          request_id)
            response = await self._error_response(errors.InternalError(), resource,
                                                  request_id, method, body, headers)
        sent = [0]
        try:
            await self._send(send, response, request_id, method, sent)
        finally:
            if account is not None and op is not None:
                self.node.meter.record(account.id, op, body.received if body else 0, sent[0])
            if response.after is not None:
                await self._after(response.after, request_id)
        self._log(method, resource, response.status, request_id, account_name, started)

    async def _after(self, fn: Callable[[], object], request_id: str) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, fn)
        except Exception:
            log.exception("clean-up after request %s failed", request_id)

    async def _error_response(
        self,
        exc: errors.S3Error,
        resource: str,
        request_id: str,
        method: str,
        body: RequestBody | None,
        headers: dict[str, str],
    ) -> Response:
        out: list[tuple[bytes, bytes]] = []
        if exc.status == 304:
            return Response(304, out)
        payload = b"" if method == "HEAD" else error_xml(
            exc.code, exc.message, resource, request_id, exc.extra)
        if payload:
            out.append((b"content-type", b"application/xml"))
        # Leave the connection usable only if the unread body is small enough to drop.
        declared = headers.get("content-length", "0")
        remaining = int(declared) if declared.isdigit() else 0
        if isinstance(exc, errors.RequestTimeout):
            out.append((b"connection", b"close"))
        elif body is not None and remaining <= _DRAIN_LIMIT:
            try:
                await body.drain()
            except (errors.S3Error, ClientDisconnected):
                out.append((b"connection", b"close"))
        elif remaining > 0 or "transfer-encoding" in headers:
            out.append((b"connection", b"close"))
        return Response(exc.status, out, payload)

    async def _send(self, send: Send, response: Response, request_id: str, method: str,
                    sent: list[int]) -> None:
        """Send the response, counting the body bytes sent in ``sent[0]`` as they go."""
        headers = response.headers
        headers.append((b"x-amz-request-id", request_id.encode()))
        headers.append((b"x-amz-id-2", request_id.encode()))
        if not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        stream = response.stream
        if stream is None:
            await send({"type": "http.response.body", "body": response.body})
            sent[0] = 0 if method == "HEAD" else len(response.body)
            return
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[bytes] | None = None
        try:
            pending = loop.run_in_executor(self.executor, stream.read, _STREAM_CHUNK)
            while True:
                chunk = await pending
                if not chunk:
                    break
                # Read the next chunk while this one is being sent.
                pending = loop.run_in_executor(self.executor, stream.read, _STREAM_CHUNK)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent[0] += len(chunk)
            await send({"type": "http.response.body", "body": b""})
        finally:
            if pending is not None and not pending.done():
                with contextlib.suppress(Exception):  # the response is already failing
                    await pending
            await loop.run_in_executor(self.executor, stream.close)

    def _log(self, method: str, resource: str, status: int, request_id: str, account: str,
             started: float) -> None:
        self.access_log.log(request_id, account, method, resource, status,
                            (time.perf_counter() - started) * 1000)
