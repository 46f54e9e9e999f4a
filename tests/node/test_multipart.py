"""Multipart uploads: the whole lifecycle and its documented errors."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

from tests.node.s3util import error_of

MiB = 1024 * 1024


def _md5_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_lifecycle_and_etag(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="video/mp4",
                                    Metadata={"m": "1"}, Tagging="k=v")
    uid = up["UploadId"]
    parts = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail"]
    etags = []
    for i, data in enumerate(parts, 1):
        etags.append(s3.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=i,
                                    Body=data)["ETag"])
    assert etags[0] == f'"{hashlib.md5(parts[0]).hexdigest()}"'
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=uid)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big", uid)]
    # not visible before completion
    assert error_of(s3.head_object, Bucket=bucket, Key="big") == ("404", 404)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": i, "ETag": e}
                                   for i, e in enumerate(etags, 1)]},
    )
    assert done["ETag"] == _md5_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ETag"] == done["ETag"]
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"m": "1"}
    assert got["Body"].read() == b"".join(parts)
    assert s3.get_object_tagging(Bucket=bucket, Key="big")["TagSet"] == [
        {"Key": "k", "Value": "v"}]
    # ranges across part boundaries
    rng = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert rng["Body"].read() == b"aabb"
    # partNumber GET
    p3 = s3.get_object(Bucket=bucket, Key="big", PartNumber=3)
    assert p3["Body"].read() == b"tail"
    assert p3["PartsCount"] == 3
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert error_of(s3.list_parts, Bucket=bucket, Key="big", UploadId=uid) == (
        "NoSuchUpload", 404)


def test_complete_with_subset_and_replaced_part(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x" * (5 * MiB))
    e1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1,
                        Body=b"y" * (5 * MiB))["ETag"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"unused")
    e3 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=3, Body=b"z")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e3}]})
    body = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == b"y" * (5 * MiB) + b"z"


def test_complete_errors(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1,
                        Body=b"small")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=b"x")["ETag"]

    def complete(parts: list[dict[str, Any]]) -> Any:
        return s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid,
                                            MultipartUpload={"Parts": parts})

    assert error_of(complete, [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]
                    ) == ("InvalidPartOrder", 400)
    assert error_of(complete, [{"PartNumber": 1, "ETag": '"0123"'}]) == ("InvalidPart", 400)
    assert error_of(complete, [{"PartNumber": 7, "ETag": e1}]) == ("InvalidPart", 400)
    assert error_of(complete, [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
                    ) == ("EntityTooSmall", 400)
    assert error_of(complete, []) == ("MalformedXML", 400)
    # The upload survives failed completions
    complete([{"PartNumber": 1, "ETag": e1}])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"small"


def test_part_number_and_upload_errors(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    assert error_of(s3.upload_part, Bucket=bucket, Key="k", UploadId=uid, PartNumber=10001,
                    Body=b"x") == ("InvalidArgument", 400)
    assert error_of(s3.upload_part, Bucket=bucket, Key="k", UploadId=uid, PartNumber=0,
                    Body=b"x") == ("InvalidArgument", 400)
    assert error_of(s3.upload_part, Bucket=bucket, Key="k", UploadId="nope", PartNumber=1,
                    Body=b"x") == ("NoSuchUpload", 404)
    assert error_of(s3.upload_part, Bucket=bucket, Key="other", UploadId=uid, PartNumber=1,
                    Body=b"x") == ("NoSuchUpload", 404)
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    assert error_of(s3.abort_multipart_upload, Bucket=bucket, Key="k", UploadId=uid) == (
        "NoSuchUpload", 404)
    assert error_of(s3.complete_multipart_upload, Bucket=bucket, Key="k", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]}) == (
        "NoSuchUpload", 404)


def test_upload_part_copy_with_range(s3: Any, bucket: str) -> None:
    source = bytes(range(256)) * (6 * 4096)  # 6 MiB
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange="bytes=100-199")
    assert p1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(source[:5 * MiB]).hexdigest()}"'
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    got = s3.get_object(Bucket=bucket, Key="dst")["Body"].read()
    assert got == source[:5 * MiB] + source[100:200]
    uid2 = s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"]
    assert error_of(s3.upload_part_copy, Bucket=bucket, Key="dst2", UploadId=uid2,
                    PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
                    CopySourceRange=f"bytes=0-{len(source)}") == ("InvalidArgument", 400)
    assert error_of(s3.upload_part_copy, Bucket=bucket, Key="dst2", UploadId=uid2,
                    PartNumber=1, CopySource={"Bucket": bucket, "Key": "missing"}) == (
        "NoSuchKey", 404)


def test_composite_checksum(s3: Any, bucket: str) -> None:
    parts = [b"p" * (5 * MiB), b"q" * 1000]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm="CRC32")[
        "UploadId"]
    done_parts = []
    raw_crcs = b""
    for i, data in enumerate(parts, 1):
        crc = zlib.crc32(data).to_bytes(4, "big")
        raw_crcs += crc
        r = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=i, Body=data,
                           ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == base64.b64encode(crc).decode()
        done_parts.append({"PartNumber": i, "ETag": r["ETag"],
                           "ChecksumCRC32": r["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid,
                                        MultipartUpload={"Parts": done_parts})
    expected = base64.b64encode(zlib.crc32(raw_crcs).to_bytes(4, "big")).decode() + "-2"
    assert done["ChecksumCRC32"] == expected
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    assert head["ChecksumType"] == "COMPOSITE"


def test_list_multipart_uploads_prefix_delimiter_paging(s3: Any, bucket: str) -> None:
    ids = {}
    for key in ["a/1", "a/2", "b/1", "c"]:
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "b/"]
    assert [u["Key"] for u in resp["Uploads"]] == ["c"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in resp["Uploads"]] == ["a/1", "a/2"]
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2)
    assert page["IsTruncated"] is True
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                     UploadIdMarker=page["NextUploadIdMarker"])
    keys = [u["Key"] for u in page["Uploads"]] + [u["Key"] for u in rest["Uploads"]]
    assert keys == ["a/1", "a/2", "b/1", "c"]
