"""AWS Signature Version 2 (HMAC-SHA1), for compatibility only.

boto3's ``generate_presigned_url`` still produces SigV2 URLs (``AWSAccessKeyId``,
``Signature``, ``Expires``) unless told ``signature_version="s3v4"``, and older tools sign
headers with ``Authorization: AWS AKID:signature``. S3 accepts both; so does this node.
Every request still has to be signed by an active key: SigV2 is another way to prove the
same thing, never a way around it.

https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html
"""

from __future__ import annotations

import base64
import hmac
import time
import urllib.parse
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from silverlining.node.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidArgument,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from silverlining.node.protocol.sigv4 import Authenticated, SecretLookup

#: Query parameters that are part of the canonical resource (S3's "sub-resources").
_SUBRESOURCES = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber",
    "policy", "requestPayment", "torrent", "versioning", "versionId", "versions", "website",
    "uploads", "uploadId", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "delete", "lifecycle", "tagging", "restore", "storageClass",
    "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
})


def is_sigv2(headers: dict[str, str], query_string: bytes) -> bool:
    auth = headers.get("authorization", "")
    if auth.startswith("AWS "):
        return True
    return b"AWSAccessKeyId=" in query_string and b"Signature=" in query_string


class V2Verifier:
    def __init__(self, lookup: SecretLookup, *, max_skew_seconds: int = 900,
                 clock: Callable[[], float] = time.time) -> None:
        self._lookup = lookup
        self._max_skew = max_skew_seconds
        self._clock = clock

    def authenticate(self, method: str, raw_path: bytes, query_string: bytes,
                     headers: dict[str, str], bucket: str, virtual_host: bool) -> Authenticated:
        query = urllib.parse.parse_qsl(query_string.decode("utf-8", "replace"),
                                       keep_blank_values=True)
        params = dict(query)
        auth = headers.get("authorization")
        if auth is not None:
            key_id, _, signature = auth[4:].strip().rpartition(":")
            date_field = "" if "x-amz-date" in headers else headers.get("date", "")
            self._check_time(headers.get("x-amz-date") or headers.get("date"))
        else:
            key_id, signature = params.get("AWSAccessKeyId", ""), params.get("Signature", "")
            expires = params.get("Expires", "")
            if not expires.isdigit():
                raise AccessDenied("Query-string authentication requires the Signature, "
                                   "Expires and AWSAccessKeyId parameters")
            if int(expires) < self._clock():
                raise AccessDenied("Request has expired", Expires=expires)
            date_field = expires
        if not key_id or not signature:
            raise InvalidArgument("Malformed AWS V2 authorization", ArgumentName="Authorization")
        secret = self._lookup(key_id)
        if secret is None:
            raise InvalidAccessKeyId(AWSAccessKeyId=key_id)
        resource = raw_path.decode("latin-1")
        if virtual_host:
            resource = f"/{bucket}{resource}"
        sub = sorted(
            (k, v) for k, v in query if k in _SUBRESOURCES
        )
        if sub:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
        amz = {}
        for name, value in headers.items():
            if name.startswith("x-amz-"):
                amz[name] = ",".join(v.strip() for v in value.split(","))
        string_to_sign = "\n".join([
            method,
            headers.get("content-md5", "").strip(),
            headers.get("content-type", "").strip(),
            date_field,
            *[f"{k}:{amz[k]}" for k in sorted(amz)],
            resource,
        ])
        expected = base64.b64encode(
            hmac.digest(secret.encode(), string_to_sign.encode("utf-8"), "sha1")
        ).decode()
        if not hmac.compare_digest(expected, signature):
            raise SignatureDoesNotMatch(StringToSign=string_to_sign, AWSAccessKeyId=key_id,
                                        SignatureProvided=signature)
        return Authenticated(
            access_key_id=key_id, region="", service="s3", content_sha256=None,
            streaming=False, chunk_signing=None, expects_trailer=False,
            presigned=auth is None,
        )

    def _check_time(self, value: str | None) -> None:
        if not value:
            raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            raise AccessDenied(
                "AWS authentication requires a valid Date or x-amz-date header") from None
        if abs(when - self._clock()) > self._max_skew:
            raise RequestTimeTooSkewed(RequestTime=value, MaxAllowedSkewMilliseconds="900000")
