"""Service and bucket operations, success paths and documented errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.node.s3util import error_of


def _name() -> str:
    return f"b-{uuid.uuid4().hex[:16]}"


def test_create_list_head_delete(s3: Any) -> None:
    name = _name()
    resp = s3.create_bucket(Bucket=name)
    assert resp["Location"] == f"/{name}"
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name in names
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert error_of(s3.head_bucket, Bucket=name) == ("404", 404)


def test_list_buckets_owner_and_dates(s3: Any, bucket: str) -> None:
    resp = s3.list_buckets()
    assert resp["Owner"]["DisplayName"] == "tester"
    assert len(resp["Owner"]["ID"]) == 64
    mine = [b for b in resp["Buckets"] if b["Name"] == bucket]
    assert mine and mine[0]["CreationDate"].year >= 2024


def test_create_with_location_constraint(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    try:
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    finally:
        s3.delete_bucket(Bucket=name)


def test_create_with_foreign_location_is_refused(s3: Any) -> None:
    code, status = error_of(
        s3.create_bucket, Bucket=_name(),
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    assert (code, status) == ("InvalidLocationConstraint", 400)


def test_bucket_already_owned_by_you(s3: Any, bucket: str) -> None:
    assert error_of(s3.create_bucket, Bucket=bucket) == ("BucketAlreadyOwnedByYou", 409)


def test_bucket_already_exists_for_other_tenant(other_s3: Any, bucket: str) -> None:
    assert error_of(other_s3.create_bucket, Bucket=bucket) == ("BucketAlreadyExists", 409)


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "Upper-case", "under_score", "-leading", "trailing-", "two..dots",
    "192.168.1.1", "xn--punycode", "dot.-hyphen", "bad-suffix-s3alias",
])
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    assert error_of(s3.create_bucket, Bucket=name) == ("InvalidBucketName", 400)


def test_delete_non_empty_bucket(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_of(s3.delete_bucket, Bucket=bucket) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="k")


def test_missing_bucket_errors(s3: Any) -> None:
    name = _name()
    assert error_of(s3.delete_bucket, Bucket=name) == ("NoSuchBucket", 404)
    assert error_of(s3.list_objects_v2, Bucket=name) == ("NoSuchBucket", 404)
    assert error_of(s3.get_bucket_location, Bucket=name) == ("NoSuchBucket", 404)
    assert error_of(s3.put_object, Bucket=name, Key="k", Body=b"") == ("NoSuchBucket", 404)


def test_get_bucket_location(s3: Any, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_delete_bucket_with_pending_upload_aborts_it(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    s3.create_multipart_upload(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    assert error_of(s3.head_bucket, Bucket=name) == ("404", 404)


def test_unsupported_configuration_reads_say_not_configured(s3: Any, bucket: str) -> None:
    assert error_of(s3.get_bucket_policy, Bucket=bucket) == ("NoSuchBucketPolicy", 404)
    assert error_of(s3.get_bucket_cors, Bucket=bucket) == ("NoSuchCORSConfiguration", 404)
    assert error_of(s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (
        "NoSuchLifecycleConfiguration", 404)
    assert error_of(s3.get_bucket_tagging, Bucket=bucket) == ("NoSuchTagSet", 404)
    assert error_of(s3.get_bucket_encryption, Bucket=bucket) == (
        "ServerSideEncryptionConfigurationNotFoundError", 404)
    assert error_of(s3.get_bucket_website, Bucket=bucket) == ("NoSuchWebsiteConfiguration", 404)
    assert error_of(s3.get_public_access_block, Bucket=bucket) == (
        "NoSuchPublicAccessBlockConfiguration", 404)
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    assert error_of(s3.get_bucket_policy, Bucket=f"{bucket}-missing") == ("NoSuchBucket", 404)


def test_unimplemented_configuration_writes_are_501(s3: Any, bucket: str) -> None:
    assert error_of(s3.put_bucket_policy, Bucket=bucket, Policy="{}") == ("NotImplemented", 501)
    assert error_of(s3.put_bucket_versioning, Bucket=bucket,
                    VersioningConfiguration={"Status": "Enabled"}) == ("NotImplemented", 501)
    assert error_of(s3.delete_bucket_cors, Bucket=bucket) == ("NotImplemented", 501)
    # and a wrong success is never given: the bucket still lists normally
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_acls_are_owner_only(s3: Any, bucket: str) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["DisplayName"] == "tester"
    assert acl["Grants"] == [{"Grantee": {"DisplayName": "tester", "ID": acl["Owner"]["ID"],
                                          "Type": "CanonicalUser"},
                              "Permission": "FULL_CONTROL"}]
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ACL="private")
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ACL="bucket-owner-full-control")
    assert s3.get_object_acl(Bucket=bucket, Key="o")["Grants"][0]["Permission"] == "FULL_CONTROL"
    for acl_name in ("public-read", "public-read-write", "authenticated-read"):
        assert error_of(s3.put_object, Bucket=bucket, Key="p", Body=b"x", ACL=acl_name) == (
            "AccessControlListNotSupported", 400)
    assert error_of(s3.put_object, Bucket=bucket, Key="p", Body=b"x",
                    GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"') == (
        "AccessControlListNotSupported", 400)
    assert error_of(s3.create_multipart_upload, Bucket=bucket, Key="p", ACL="public-read") == (
        "AccessControlListNotSupported", 400)
    assert error_of(s3.copy_object, Bucket=bucket, Key="p", CopySource=f"{bucket}/o",
                    ACL="public-read") == ("AccessControlListNotSupported", 400)
    assert error_of(s3.create_bucket, Bucket=f"{bucket}-pub", ACL="public-read") == (
        "InvalidBucketAclWithObjectOwnership", 400)
    assert error_of(s3.head_object, Bucket=bucket, Key="p") == ("404", 404)
    assert error_of(s3.put_object_acl, Bucket=bucket, Key="o", ACL="public-read") == (
        "AccessControlListNotSupported", 400)
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="private")
    owner = acl["Owner"]
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"ID": owner["ID"], "Type": "CanonicalUser"},
         "Permission": "FULL_CONTROL"}]})
    assert error_of(s3.put_bucket_acl, Bucket=bucket, AccessControlPolicy={
        "Owner": owner, "Grants": [{"Grantee": {"ID": "someone-else", "Type": "CanonicalUser"},
                                    "Permission": "READ"}]}) == (
        "AccessControlListNotSupported", 400)


def test_get_bucket_versioning_is_unversioned(s3: Any, bucket: str) -> None:
    resp = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in resp


def _signed_vhost_get(node: Any, host: str, path: str) -> tuple[int, bytes]:
    """GET http://HOST/PATH signed for that host, sent to the node's loopback port (so no DNS
    for BUCKET.localhost is needed)."""
    import http.client

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=f"http://{host}{path}")
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(Credentials(node.access_key, node.secret_key), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        conn.request("GET", path, headers={**dict(req.headers.items()), "Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_virtual_hosted_style(node: Any, bucket: str, s3: Any) -> None:
    import botocore.session
    from botocore.parsers import RestXMLParser

    s3.put_object(Bucket=bucket, Key="dir/vhost file.txt", Body=b"virtual")
    host = f"{bucket}.localhost:{node.port}"
    status, body = _signed_vhost_get(node, host, "/dir/vhost%20file.txt")
    assert (status, body) == (200, b"virtual")
    status, body = _signed_vhost_get(node, host, "/?list-type=2")
    assert status == 200
    shape = botocore.session.get_session().get_service_model("s3").operation_model(
        "ListObjectsV2").output_shape
    parsed = RestXMLParser().parse({"status_code": 200, "headers": {}, "body": body}, shape)
    assert parsed["Name"] == bucket
    assert [o["Key"] for o in parsed["Contents"]] == ["dir/vhost file.txt"]
    # Another tenant's bucket through virtual hosting is still refused
    status, body = _signed_vhost_get(node, f"nonexistent-{bucket}.localhost:{node.port}", "/")
    assert status == 404 and b"NoSuchBucket" in body
