"""Bucket and object configuration this node does not support, answered truthfully.

ACLs are disabled, as on every new S3 bucket since 2023 (Object Ownership
"BucketOwnerEnforced"): the owner has full control, and requests that try to grant anything
else are refused with ``AccessControlListNotSupported`` rather than silently ignored.
https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html

Reads of configurations a bucket cannot have (policy, CORS, lifecycle, ...) get S3's own
"not configured" answers, which is what tools like s3cmd and Terraform expect; writes of
them stay 501 NotImplemented.
"""

from __future__ import annotations

from silverlining.node import errors
from silverlining.node.protocol.s3.request import Response, S3Request
from silverlining.node.protocol.s3.xmlbody import parse_acl

_ACL_HEADERS = ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                "x-amz-grant-write-acp", "x-amz-grant-full-control")
#: Canned ACLs that grant nobody but the owner anything (accepted, as S3 does).
_OWNER_ONLY = ("private", "bucket-owner-full-control")


def refuse_acl_grants(req: S3Request, *, bucket: bool = False) -> None:
    """Refuse a write that asks for an ACL granting anyone but the owner."""
    acl = req.headers.get("x-amz-acl")
    grants = [h for h in _ACL_HEADERS if h in req.headers]
    if (acl is not None and acl.strip() not in _OWNER_ONLY) or grants:
        if bucket:
            raise errors.InvalidBucketAclWithObjectOwnership()
        raise errors.AccessControlListNotSupported()


def _owner_full_control(req: S3Request) -> dict[str, object]:
    owner = {"ID": req.account.canonical_id, "DisplayName": req.account.name}
    return {"Owner": owner, "Grants": [{
        "Grantee": {**owner, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]}


async def get_bucket_acl(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketAcl", _owner_full_control(req))


async def get_object_acl(req: S3Request) -> Response:
    req.node.objects.head(req.account, req.bucket, req.key)
    return req.render("GetObjectAcl", _owner_full_control(req))


async def _put_acl(req: S3Request) -> None:
    """PutBucketAcl / PutObjectAcl: accepted only when it grants nobody but the owner (a
    no-op, since that is the only ACL there is); anything else is refused, as S3 does."""
    refuse_acl_grants(req)
    body = await req.body.read_all(req.node.config.limits.max_xml_body, req.headers)
    if body.strip():
        policy = parse_acl(body)
        if any(grantee != req.account.canonical_id or permission != "FULL_CONTROL"
               for grantee, permission in policy):
            raise errors.AccessControlListNotSupported()


async def put_bucket_acl(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    await _put_acl(req)
    return req.render("PutBucketAcl", {})


async def put_object_acl(req: S3Request) -> Response:
    req.node.objects.head(req.account, req.bucket, req.key)
    await _put_acl(req)
    return req.render("PutObjectAcl", {})


async def get_bucket_request_payment(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketRequestPayment", {"Payer": "BucketOwner"})


async def get_bucket_ownership_controls(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketOwnershipControls", {"OwnershipControls": {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}})


async def get_bucket_logging(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketLogging", {})


async def get_bucket_accelerate(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketAccelerateConfiguration", {})


async def get_bucket_notification(req: S3Request) -> Response:
    req.node.buckets.owned(req.account, req.bucket)
    return req.render("GetBucketNotificationConfiguration", {})


_NOT_CONFIGURED: dict[str, type[errors.S3Error]] = {
    "policy": errors.NoSuchBucketPolicy,
    "cors": errors.NoSuchCORSConfiguration,
    "lifecycle": errors.NoSuchLifecycleConfiguration,
    "tagging": errors.NoSuchTagSet,
    "website": errors.NoSuchWebsiteConfiguration,
    "encryption": errors.ServerSideEncryptionConfigurationNotFoundError,
    "publicAccessBlock": errors.NoSuchPublicAccessBlockConfiguration,
    "object-lock": errors.ObjectLockConfigurationNotFoundError,
    "replication": errors.ReplicationConfigurationNotFoundError,
}


async def get_bucket_unconfigured(req: S3Request) -> Response:
    """GetBucketPolicy, GetBucketCors, ...: the bucket has none."""
    req.node.buckets.owned(req.account, req.bucket)
    for sub, error in _NOT_CONFIGURED.items():
        if sub in req.query:
            raise error(BucketName=req.bucket)
    raise errors.NotImplementedYet()


NOT_CONFIGURED_SUBRESOURCES = frozenset(_NOT_CONFIGURED)
