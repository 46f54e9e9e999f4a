"""Buckets: create, list, delete, naming."""

from __future__ import annotations

from functools import partial

from botocore.exceptions import ClientError

from silverlining.core.context import (
    CheckContext,
    create_bucket_params,
    error_code,
    error_status,
    remove_bucket,
)
from silverlining.core.registry import Level, check


@check(
    "s3.bucket.create-delete",
    Level.S3_BASIC,
    "A created bucket answers HeadBucket, and once deleted it answers 404.",
)
def create_delete(ctx: CheckContext) -> None:
    name = ctx.bucket_name()
    ctx.defer(f"delete bucket {name}", lambda: remove_bucket(ctx.s3, name))
    ctx.s3.create_bucket(**create_bucket_params(name, ctx.target.region))
    ctx.s3.head_bucket(Bucket=name)
    response = ctx.s3.delete_bucket(Bucket=name)
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    ctx.expect(status == 204, "DeleteBucket answers HTTP 204", f"HTTP {status}")
    ctx.expect_error(lambda: ctx.s3.head_bucket(Bucket=name), 404, None, "HeadBucket after delete")


@check(
    "s3.bucket.list",
    Level.S3_BASIC,
    "ListBuckets shows each bucket the account created, with its creation date, "
    "and no deleted one.",
)
def list_buckets(ctx: CheckContext) -> None:
    kept = ctx.new_bucket()
    gone = ctx.new_bucket(hint="deleted")
    ctx.s3.delete_bucket(Bucket=gone)
    listing = ctx.s3.list_buckets()
    buckets = {b["Name"]: b for b in listing.get("Buckets", [])}
    ctx.expect(kept in buckets, f"ListBuckets includes {kept}", f"names: {sorted(buckets)[:20]}")
    ctx.expect(
        buckets[kept].get("CreationDate") is not None,
        f"a CreationDate for {kept}",
        repr(buckets[kept]),
    )
    ctx.expect(gone not in buckets, f"ListBuckets omits the deleted {gone}", "it is listed")
    owner = listing.get("Owner", {})
    ctx.expect(bool(owner.get("ID")), "an Owner with an ID", repr(owner))


@check(
    "s3.bucket.delete-not-empty",
    Level.S3_BASIC,
    "DeleteBucket on a bucket holding an object fails with 409 BucketNotEmpty and keeps it.",
)
def delete_not_empty(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "keep.txt", b"still here")
    ctx.expect_error(
        lambda: ctx.s3.delete_bucket(Bucket=bucket), 409, "BucketNotEmpty", "DeleteBucket"
    )
    body, _ = ctx.get(bucket, "keep.txt")
    ctx.expect_bytes(body, b"still here", "the object after the refused DeleteBucket")


@check(
    "s3.bucket.recreate-owned",
    Level.S3_FULL,
    "Creating a bucket the account already owns neither empties nor replaces it "
    "(409 BucketAlreadyOwnedByYou, or 200 in us-east-1 as AWS does).",
)
def recreate_owned(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put(bucket, "keep.txt", b"still here")
    try:
        ctx.s3.create_bucket(**create_bucket_params(bucket, ctx.target.region))
    except ClientError as error:
        ctx.expect(
            error_status(error) == 409 and error_code(error) == "BucketAlreadyOwnedByYou",
            "CreateBucket rejected with HTTP 409 BucketAlreadyOwnedByYou",
            f"HTTP {error_status(error)} {error_code(error)}",
        )
    else:
        ctx.expect(
            ctx.target.region == "us-east-1",
            "CreateBucket rejected with HTTP 409 BucketAlreadyOwnedByYou",
            "success outside us-east-1",
        )
    body, _ = ctx.get(bucket, "keep.txt")
    ctx.expect_bytes(body, b"still here", "the object after creating its bucket again")


@check(
    "s3.bucket.invalid-name",
    Level.S3_FULL,
    "CreateBucket refuses names S3 does not allow (upper case, too short, too long, "
    "IP address form, adjacent dots) with 400 InvalidBucketName.",
)
def invalid_name(ctx: CheckContext) -> None:
    run = ctx.session.run_id
    names = [
        f"core-{run}-UPPER",
        "ab",
        f"core-{run}-" + "x" * 60,
        "192.168.10.20",
        f"core-{run}..dots",
        f"-core-{run}-dash",
    ]
    for name in names:
        ctx.defer(f"delete bucket {name}", partial(remove_bucket, ctx.s3, name))
        ctx.expect_error(
            partial(ctx.s3.create_bucket, **create_bucket_params(name, ctx.target.region)),
            400,
            "InvalidBucketName",
            f"CreateBucket {name!r}",
        )


@check(
    "s3.bucket.location",
    Level.S3_FULL,
    "GetBucketLocation names the region the bucket was created in "
    "(empty for us-east-1, as AWS answers).",
)
def location(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    got = ctx.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    expected = None if ctx.target.region == "us-east-1" else ctx.target.region
    if ctx.target.region == "us-east-1":
        ctx.expect(got in (None, ""), "LocationConstraint empty for us-east-1", repr(got))
    else:
        ctx.expect_equal(got, expected, "LocationConstraint")
