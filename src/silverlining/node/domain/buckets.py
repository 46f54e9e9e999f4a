"""Buckets: create, find (with tenancy checks), list, delete."""

from __future__ import annotations

from silverlining.node import errors
from silverlining.node.domain.model import Account, Bucket
from silverlining.node.domain.names import check_bucket_name
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.objects import ObjectRepository


class BucketService:
    def __init__(self, repo: ObjectRepository, blobs: BlobStore, region: str) -> None:
        self.repo = repo
        self.blobs = blobs
        self.region = region

    def create(self, account: Account, name: str, location: str | None) -> Bucket:
        check_bucket_name(name)
        region = location or self.region
        if location is not None and location != self.region and not (
            # us-east-1 is S3's implied default; clients send it or nothing.
            location == "us-east-1" and self.region == "us-east-1"
        ):
            raise errors.InvalidLocationConstraint(
                f"The specified location-constraint is not valid: this node serves "
                f"{self.region!r}.",
                LocationConstraint=location,
            )
        return self.repo.create_bucket(name, account.id, region)

    def owned(self, account: Account, name: str) -> Bucket:
        """The bucket ``name`` if ``account`` owns it; NoSuchBucket or AccessDenied if not."""
        bucket = self.repo.get_bucket(name)
        if bucket is None:
            raise errors.NoSuchBucket(BucketName=name)
        if bucket.account_id != account.id:
            raise errors.AccessDenied()
        return bucket

    def list(self, account: Account) -> list[Bucket]:
        return self.repo.list_buckets(account.id)

    def delete(self, account: Account, name: str) -> None:
        self.owned(account, name)
        self.blobs.delete_many(self.repo.delete_bucket(name))
