"""Tenant isolation: another account can neither read, list, write nor delete.

These need a second account on the provider (``--alt-access-key``/``--alt-secret-key``).
Without one they are skipped, and a skipped check never counts as passed.
"""

from __future__ import annotations

from functools import partial

from botocore.exceptions import ClientError

from silverlining.core.context import (
    CheckContext,
    create_bucket_params,
    describe_client_error,
    error_code,
    error_status,
)
from silverlining.core.registry import Level, check

SECRET = b"for the owner's eyes only"


def _owned(ctx: CheckContext) -> str:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "private.txt", SECRET)
    return bucket


def _keys(ctx: CheckContext, bucket: str) -> list[str]:
    return [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@check(
    "s3.isolation.read",
    Level.S3_FULL,
    "Another account cannot read a bucket's objects or their metadata (403 AccessDenied).",
    needs_alt=True,
)
def read(ctx: CheckContext) -> None:
    bucket = _owned(ctx)
    attempts = {
        "GetObject": partial(ctx.alt.get_object, Bucket=bucket, Key="private.txt"),
        "GetObject (range)": partial(
            ctx.alt.get_object, Bucket=bucket, Key="private.txt", Range="bytes=0-3"
        ),
        "GetObjectTagging": partial(ctx.alt.get_object_tagging, Bucket=bucket, Key="private.txt"),
    }
    for name, call in attempts.items():
        ctx.expect_error(call, 403, "AccessDenied", f"{name} by another account")
    ctx.expect_error(
        partial(ctx.alt.head_object, Bucket=bucket, Key="private.txt"),
        403,
        None,
        "HeadObject by another account",
    )
    url = ctx.alt.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "private.txt"}, ExpiresIn=60
    )
    ctx.expect_status(
        ctx.send("GET", url), 403, "AccessDenied", "a URL presigned by another account"
    )


@check(
    "s3.isolation.list",
    Level.S3_FULL,
    "Another account cannot list a bucket's objects or uploads, and does not see the bucket "
    "in its ListBuckets.",
    needs_alt=True,
)
def list_(ctx: CheckContext) -> None:
    bucket = _owned(ctx)
    attempts = {
        "ListObjectsV2": partial(ctx.alt.list_objects_v2, Bucket=bucket),
        "ListObjects": partial(ctx.alt.list_objects, Bucket=bucket),
        "ListMultipartUploads": partial(ctx.alt.list_multipart_uploads, Bucket=bucket),
    }
    for name, call in attempts.items():
        ctx.expect_error(call, 403, "AccessDenied", f"{name} by another account")
    names = [b["Name"] for b in ctx.alt.list_buckets().get("Buckets", [])]
    ctx.expect(
        bucket not in names,
        f"another account's ListBuckets without {bucket}",
        f"it lists {bucket}",
    )


@check(
    "s3.isolation.write",
    Level.S3_FULL,
    "Another account cannot write into a bucket: PutObject, CreateMultipartUpload and "
    "CopyObject out of it are refused (403) and nothing changes.",
    needs_alt=True,
)
def write(ctx: CheckContext) -> None:
    bucket = _owned(ctx)
    own = ctx.new_bucket(client=ctx.alt, hint="isolation-alt")
    attempts = {
        "PutObject (new key)": partial(ctx.alt.put_object, Bucket=bucket, Key="planted", Body=b"x"),
        "PutObject (overwrite)": partial(
            ctx.alt.put_object, Bucket=bucket, Key="private.txt", Body=b"overwritten"
        ),
        "CreateMultipartUpload": partial(
            ctx.alt.create_multipart_upload, Bucket=bucket, Key="planted-mpu"
        ),
        "CopyObject into its own bucket": partial(
            ctx.alt.copy_object,
            Bucket=own,
            Key="stolen",
            CopySource={"Bucket": bucket, "Key": "private.txt"},
        ),
        "PutObjectTagging": partial(
            ctx.alt.put_object_tagging,
            Bucket=bucket,
            Key="private.txt",
            Tagging={"TagSet": [{"Key": "owned", "Value": "by-alt"}]},
        ),
    }
    for name, call in attempts.items():
        ctx.expect_error(call, 403, "AccessDenied", f"{name} by another account")
    ctx.expect_equal(_keys(ctx, bucket), ["private.txt"], "the owner's keys afterwards")
    data, _ = ctx.get(bucket, "private.txt")
    ctx.expect_bytes(data, SECRET, "the owner's object afterwards")
    uploads = ctx.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ctx.expect_equal(uploads, [], "the uploads in the owner's bucket afterwards")


@check(
    "s3.isolation.delete",
    Level.S3_FULL,
    "Another account cannot delete a bucket's objects (DeleteObject, DeleteObjects) or the "
    "bucket itself; everything survives.",
    needs_alt=True,
)
def delete(ctx: CheckContext) -> None:
    bucket = _owned(ctx)
    ctx.expect_error(
        partial(ctx.alt.delete_object, Bucket=bucket, Key="private.txt"),
        403,
        "AccessDenied",
        "DeleteObject by another account",
    )
    try:
        response = ctx.alt.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "private.txt"}]}
        )
    except ClientError as error:
        ctx.expect(
            error_status(error) == 403 and error_code(error) == "AccessDenied",
            "DeleteObjects by another account rejected with HTTP 403 AccessDenied",
            describe_client_error(error),
        )
    else:
        # S3 may also answer 200 with a per-key AccessDenied error; nothing may be deleted.
        ctx.expect(
            not response.get("Deleted")
            and all(e.get("Code") == "AccessDenied" for e in response.get("Errors", [])),
            "DeleteObjects by another account: 403, or every key refused with AccessDenied",
            f"Deleted={response.get('Deleted')}, Errors={response.get('Errors')}",
        )
    ctx.expect_error(
        partial(ctx.alt.delete_bucket, Bucket=bucket),
        403,
        "AccessDenied",
        "DeleteBucket by another account",
    )
    ctx.expect_equal(_keys(ctx, bucket), ["private.txt"], "the owner's keys afterwards")


@check(
    "s3.isolation.bucket-name",
    Level.S3_FULL,
    "Another account cannot create a bucket under a name already taken (409 "
    "BucketAlreadyExists), and the owner's bucket is untouched.",
    needs_alt=True,
)
def bucket_name(ctx: CheckContext) -> None:
    bucket = _owned(ctx)
    ctx.expect_error(
        partial(ctx.alt.create_bucket, **create_bucket_params(bucket, ctx.target.region)),
        409,
        "BucketAlreadyExists",
        "CreateBucket of a taken name by another account",
    )
    ctx.expect_equal(_keys(ctx, bucket), ["private.txt"], "the owner's keys afterwards")
