"""Object operations: put/get/head/delete, metadata, digests, ranges, conditionals, copy,
tagging, DeleteObjects. Every response is parsed by botocore (errors as ClientError)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import zlib
from typing import Any

import pytest

from tests.node.s3util import error_of


def test_put_get_round_trip_with_headers_and_metadata(s3: Any, bucket: str) -> None:
    body = b"hello, silver lining\n" * 100
    put = s3.put_object(
        Bucket=bucket, Key="docs/readme.txt", Body=body,
        ContentType="text/plain; charset=utf-8", ContentEncoding="identity",
        ContentDisposition='attachment; filename="readme.txt"', ContentLanguage="en-GB",
        CacheControl="max-age=60", Expires=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        Metadata={"owner": "alice", "Mixed-Case": "Value With Spaces"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="docs/readme.txt")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["ContentEncoding"] == "identity"
    assert got["ContentDisposition"] == 'attachment; filename="readme.txt"'
    assert got["ContentLanguage"] == "en-GB"
    assert got["CacheControl"] == "max-age=60"
    assert got["Expires"] == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert got["Metadata"] == {"owner": "alice", "mixed-case": "Value With Spaces"}
    assert got["AcceptRanges"] == "bytes"
    head = s3.head_object(Bucket=bucket, Key="docs/readme.txt")
    assert head["ContentLength"] == len(body)
    assert head["Metadata"] == got["Metadata"]
    assert abs((head["LastModified"] - dt.datetime.now(dt.UTC)).total_seconds()) < 60


def test_default_content_type_and_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert got["ContentType"] == "binary/octet-stream"


def test_overwrite_replaces_bytes_and_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second", ContentType="text/x")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second"
    assert got["Metadata"] == {}
    assert got["ContentType"] == "text/x"


@pytest.mark.parametrize("key", [
    "with space", "unicodé/ключ/鍵", "plus+sign", "percent%20literal", "a//double//slash",
    "trailing/", "tilde~star*", "semi;colon,comma", "question?mark", "hash#tag", "../../etc/passwd",
    "emoji-\U0001f600", "quote'\"", "x" * 1024,
])
def test_awkward_keys(s3: Any, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == [key]
    s3.delete_object(Bucket=bucket, Key=key)


def test_key_too_long(s3: Any, bucket: str) -> None:
    assert error_of(s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"") == (
        "KeyTooLongError", 400)


def test_no_such_key(s3: Any, bucket: str) -> None:
    assert error_of(s3.get_object, Bucket=bucket, Key="missing") == ("NoSuchKey", 404)
    assert error_of(s3.head_object, Bucket=bucket, Key="missing") == ("404", 404)
    assert error_of(s3.get_object_tagging, Bucket=bucket, Key="missing") == ("NoSuchKey", 404)


def test_content_md5(s3: Any, bucket: str) -> None:
    body = b"md5 checked"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert error_of(s3.put_object, Bucket=bucket, Key="k2", Body=body, ContentMD5=bad) == (
        "BadDigest", 400)
    assert error_of(s3.put_object, Bucket=bucket, Key="k3", Body=body,
                    ContentMD5="not-base64!") == ("InvalidDigest", 400)
    assert error_of(s3.head_object, Bucket=bucket, Key="k2") == ("404", 404)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_flexible_checksums_round_trip(s3: Any, bucket: str, algorithm: str) -> None:
    body = b"checksummed payload " * 1000
    field = f"Checksum{algorithm}"
    if algorithm == "CRC32C":
        # botocore computes CRC32C only with awscrt installed; send the value ourselves.
        import google_crc32c

        value = base64.b64encode(google_crc32c.value(body).to_bytes(4, "big")).decode()
        put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumCRC32C=value)
        assert put[field] == value
    else:
        put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm=algorithm)
    assert field in put
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[field] == put[field]
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore validates the checksum while reading
    assert got[field] == put[field]
    # Not asked for: not returned
    assert field not in s3.head_object(Bucket=bucket, Key="c")


def test_wrong_checksum_is_bad_digest(s3: Any, bucket: str) -> None:
    wrong = base64.b64encode(zlib.crc32(b"something else").to_bytes(4, "big")).decode()
    assert error_of(s3.put_object, Bucket=bucket, Key="c", Body=b"payload",
                    ChecksumCRC32=wrong) == ("BadDigest", 400)
    right = base64.b64encode(zlib.crc32(b"payload").to_bytes(4, "big")).decode()
    assert s3.put_object(Bucket=bucket, Key="c", Body=b"payload",
                         ChecksumCRC32=right)["ChecksumCRC32"] == right
    assert error_of(s3.put_object, Bucket=bucket, Key="c", Body=b"payload",
                    ChecksumCRC32="@@@") == ("InvalidRequest", 400)


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", (0, 9)),
    ("bytes=10-", (10, 99)),
    ("bytes=-5", (95, 99)),
    ("bytes=90-200", (90, 99)),
    ("bytes=-500", (0, 99)),
])
def test_ranges(s3: Any, bucket: str, header: str, expected: tuple[int, int]) -> None:
    body = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    first, last = expected
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/100"
    assert got["Body"].read() == body[first:last + 1]


def test_unsatisfiable_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    assert error_of(s3.get_object, Bucket=bucket, Key="r", Range="bytes=10-20") == (
        "InvalidRange", 416)
    # A syntactically invalid range is ignored (the whole object), as S3 does.
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=5-2")
    assert got["Body"].read() == b"0123456789"


def test_conditional_get(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    assert error_of(s3.get_object, Bucket=bucket, Key="c", IfMatch='"nope"') == (
        "PreconditionFailed", 412)
    assert error_of(s3.get_object, Bucket=bucket, Key="c", IfNoneMatch=etag) == (
        "304", 304)
    assert error_of(s3.get_object, Bucket=bucket, Key="c", IfModifiedSince=future) == (
        "304", 304)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"cond"
    assert error_of(s3.get_object, Bucket=bucket, Key="c", IfUnmodifiedSince=past) == (
        "PreconditionFailed", 412)
    # If-Match true wins over If-Unmodified-Since false (RFC 9110 / S3 docs)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag,
                         IfUnmodifiedSince=past)["Body"].read() == b"cond"
    assert error_of(s3.head_object, Bucket=bucket, Key="c", IfNoneMatch=etag) == ("304", 304)
    assert error_of(s3.head_object, Bucket=bucket, Key="c", IfMatch='"x"') == ("412", 412)


def test_conditional_put(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    assert error_of(s3.put_object, Bucket=bucket, Key="once", Body=b"second",
                    IfNoneMatch="*") == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_response_header_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket, Key="o", ResponseContentType="application/json",
        ResponseContentDisposition="inline", ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr", ResponseContentEncoding="gzip",
        ResponseExpires=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "gzip"
    assert got["Expires"] == dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def test_delete_object_is_idempotent(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(s3.get_object, Bucket=bucket, Key="d") == ("NoSuchKey", 404)


def test_delete_objects(s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k0"}, {"Key": "k1"}, {"Key": "missing"},
    ]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["k0", "k1", "missing"]
    assert resp.get("Errors", []) == []
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k2"}], "Quiet": True})
    assert quiet.get("Deleted", []) == []
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["k3", "k4"]


def test_delete_objects_limits(s3: Any, bucket: str) -> None:
    too_many = [{"Key": f"k{i}"} for i in range(1001)]
    assert error_of(s3.delete_objects, Bucket=bucket, Delete={"Objects": too_many}) == (
        "MalformedXML", 400)
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k" * 1025}]})
    assert resp["Errors"][0]["Code"] == "InvalidArgument"


def test_copy_within_and_across_buckets(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", ContentType="text/plain",
                  Metadata={"a": "1"}, Tagging="t=1")
    res = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert res["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "text/plain"
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
    other = f"{bucket}-2"
    s3.create_bucket(Bucket=other)
    try:
        s3.copy_object(Bucket=other, Key="x y", CopySource=f"{bucket}/src",
                       MetadataDirective="REPLACE", Metadata={"b": "2"},
                       ContentType="application/x-new")
        got = s3.get_object(Bucket=other, Key="x y")
        assert got["Body"].read() == b"copy me"
        assert got["Metadata"] == {"b": "2"}
        assert got["ContentType"] == "application/x-new"
        # deleting the source leaves the copy intact
        s3.delete_object(Bucket=bucket, Key="src")
        assert s3.get_object(Bucket=other, Key="x y")["Body"].read() == b"copy me"
    finally:
        s3.delete_object(Bucket=other, Key="x y")
        s3.delete_bucket(Bucket=other)


def test_copy_onto_itself(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"v": "1"})
    assert error_of(s3.copy_object, Bucket=bucket, Key="self",
                    CopySource={"Bucket": bucket, "Key": "self"}) == ("InvalidRequest", 400)
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same"
    assert got["Metadata"] == {"v": "2"}


def test_copy_source_conditions_and_errors(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="s", Body=b"x")["ETag"]
    src = {"Bucket": bucket, "Key": "s"}
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=src, CopySourceIfMatch=etag)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    CopySourceIfMatch='"other"') == ("PreconditionFailed", 412)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    CopySourceIfNoneMatch=etag) == ("PreconditionFailed", 412)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    CopySourceIfUnmodifiedSince=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == (
        "PreconditionFailed", 412)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    CopySourceIfModifiedSince=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
                    ) == ("PreconditionFailed", 412)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2",
                    CopySource={"Bucket": bucket, "Key": "missing"}) == ("NoSuchKey", 404)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2",
                    CopySource={"Bucket": f"{bucket}-nope", "Key": "s"}) == ("NoSuchBucket", 404)
    assert error_of(s3.copy_object, Bucket=bucket, Key="d2", CopySource=src,
                    MetadataDirective="BOGUS") == ("InvalidArgument", 400)


def test_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="env=prod&team=storage")
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "storage")]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="t",
                          Tagging={"TagSet": [{"Key": "k", "Value": "v w"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "k", "Value": "v w"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    assert error_of(s3.put_object_tagging, Bucket=bucket, Key="t",
                    Tagging={"TagSet": eleven}) == ("InvalidTag", 400)
    assert error_of(s3.put_object_tagging, Bucket=bucket, Key="t",
                    Tagging={"TagSet": [{"Key": "k" * 129, "Value": "v"}]}) == ("InvalidTag", 400)
    assert error_of(s3.put_object_tagging, Bucket=bucket, Key="missing",
                    Tagging={"TagSet": []}) == ("NoSuchKey", 404)


def test_user_metadata_too_large(s3: Any, bucket: str) -> None:
    assert error_of(s3.put_object, Bucket=bucket, Key="m", Body=b"",
                    Metadata={"big": "x" * 2100}) == ("MetadataTooLarge", 400)


def test_unimplemented_object_subresource(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    assert error_of(s3.get_object_retention, Bucket=bucket, Key="o") == ("NotImplemented", 501)
    assert error_of(s3.get_object, Bucket=bucket, Key="o", VersionId="3HL4kqtJlcpXroDTDm") == (
        "InvalidArgument", 400)
