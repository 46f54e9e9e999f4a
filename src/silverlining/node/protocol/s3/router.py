"""Which S3 operation a request is: from the method, bucket/key presence and subresources.

https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html
"""

from __future__ import annotations

#: Bucket subresources this node does not implement: answered with 501 NotImplemented, never
#: with a wrong success (e.g. a GET ?policy must not list objects).
_UNSUPPORTED_BUCKET = frozenset({
    "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering", "inventory",
    "lifecycle", "logging", "metrics", "notification", "object-lock", "ownershipControls",
    "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment", "tagging",
    "versions", "website", "session", "metadataTable", "metadataConfiguration", "abac",
})
_UNSUPPORTED_OBJECT = frozenset({
    "legal-hold", "retention", "restore", "select", "torrent", "attributes",
    "renameObject",
})


METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})


def operation(method: str, bucket: str, key: str, query: dict[str, str],
              headers: dict[str, str]) -> str | None:
    """The operation name (as in botocore's model), or None if it is not one we serve.
    The caller answers 405 for a method S3 does not have at all (see METHODS)."""
    if not bucket:
        return "ListBuckets" if method == "GET" else None
    if not key:
        return _bucket_operation(method, query)
    return _object_operation(method, query, headers)


#: Bucket sub-resources whose GET is answered (with "owner only" or "not configured").
_BUCKET_READS = {
    "acl": "GetBucketAcl",
    "requestPayment": "GetBucketRequestPayment",
    "ownershipControls": "GetBucketOwnershipControls",
    "logging": "GetBucketLogging",
    "accelerate": "GetBucketAccelerateConfiguration",
    "notification": "GetBucketNotificationConfiguration",
    **{sub: "GetBucketUnconfigured" for sub in (
        "policy", "cors", "lifecycle", "tagging", "website", "encryption",
        "publicAccessBlock", "object-lock", "replication")},
}


def _bucket_operation(method: str, query: dict[str, str]) -> str | None:
    if method == "GET":
        for sub, op in _BUCKET_READS.items():
            if sub in query:
                return op
    if method == "PUT" and "acl" in query:
        return "PutBucketAcl"
    if _UNSUPPORTED_BUCKET.intersection(query):
        return None
    if method == "GET":
        if "location" in query:
            return "GetBucketLocation"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versioning" in query:
            return "GetBucketVersioning"
        if query.get("list-type") == "2":
            return "ListObjectsV2"
        return "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return None if query.keys() - {"x-id"} else "CreateBucket"
    if method == "DELETE":
        return None if query.keys() - {"x-id"} else "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    return None


def _object_operation(method: str, query: dict[str, str], headers: dict[str, str]) -> str | None:
    if _UNSUPPORTED_OBJECT.intersection(query):
        return None
    copy = "x-amz-copy-source" in headers
    if "acl" in query:
        return {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"}.get(method)
    if method == "PUT":
        if "tagging" in query:
            return "PutObjectTagging"
        if "uploadId" in query or "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "tagging" in query:
            return "GetObjectTagging"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    return None
