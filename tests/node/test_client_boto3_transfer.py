"""boto3's transfer manager and presigned URLs against the real node, with boto3's defaults.

Recent botocore computes a CRC32 for every upload by default (``request_checksum_calculation =
when_supported``). Over plain HTTP it sends it in an ``x-amz-checksum-crc32`` header with a
signed payload; over TLS it streams the body as aws-chunked with the checksum in a trailer
(``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, see ``botocore/httpchecksum.py``). The tests here run
both: the defaults as they are over HTTP, and, in ``test_trailing_checksums_as_sent_over_tls``,
the exact requests boto3 sends to an HTTPS endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.httpchecksum
import pytest
from boto3.s3.transfer import TransferConfig

from tests.node.clients import (
    MiB,
    Node,
    drop_large_files,
    file_digest,
    list_keys,
    md5_hex,
    multipart_etag,
    write_random_file,
)

PART = 8 * MiB
TRANSFER = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def composite_crc32(path: Path, part_size: int) -> str:
    """S3's COMPOSITE checksum of a multipart object: CRC32 of the parts' CRC32s, then -N.

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
    """
    crcs = b""
    count = 0
    with path.open("rb") as f:
        while block := f.read(part_size):
            crcs += zlib.crc32(block).to_bytes(4, "big")
            count += 1
    return f"{crc32_b64(crcs)}-{count}"


def file_crc32_b64(path: Path) -> str:
    crc = 0
    with path.open("rb") as f:
        while block := f.read(MiB):
            crc = zlib.crc32(block, crc)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def header(request: Any, name: str) -> str | None:
    """A header of a request as botocore sent it (values are bytes once signed)."""
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(autouse=True)
def _drop_large_files(tmp_path: Path) -> Iterator[None]:
    yield
    drop_large_files(tmp_path)


@pytest.fixture
def sent(s3: Any) -> Iterator[list[Any]]:
    """Every request the session client sends while the test runs (as botocore prepared it)."""
    requests: list[Any] = []

    def record(request: Any, **_: Any) -> None:
        requests.append(request)

    s3.meta.events.register("before-send.s3", record)
    yield requests
    s3.meta.events.unregister("before-send.s3", record)


def test_upload_file_and_download_file_of_100_mib_in_parts(
        s3: Any, bucket: str, tmp_path: Path, sent: list[Any]) -> None:
    src = tmp_path / "big.bin"
    size = 100 * MiB + 12345  # a short last part
    digest = write_random_file(src, size)

    s3.upload_file(str(src), bucket, "dir/big.bin", Config=TRANSFER)

    parts = [r for r in sent if r.method == "PUT" and "partNumber=" in r.url]
    assert len(parts) == 13
    # The default checksum, as sent over HTTP: a CRC32 header on every part.
    assert all(header(r, "x-amz-checksum-crc32") for r in parts)
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    assert head["ETag"] == multipart_etag(src, PART)
    assert head["ChecksumType"] == "COMPOSITE"
    assert head["ChecksumCRC32"] == composite_crc32(src, PART)
    assert list_keys(s3, bucket) == {"dir/big.bin": size}

    dst = tmp_path / "big.copy"
    s3.download_file(bucket, "dir/big.bin", str(dst), Config=TRANSFER)
    assert dst.stat().st_size == size
    assert file_digest(dst) == digest
    ranged = [r for r in sent if r.method == "GET" and header(r, "Range")]
    assert len(ranged) >= 13, "download_file should fetch a large object in ranges"


def test_upload_file_and_download_file_below_the_multipart_threshold(
        s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "small.bin"
    write_random_file(src, 3 * MiB + 1)

    s3.upload_file(str(src), bucket, "small.bin", Config=TRANSFER,
                   ExtraArgs={"Metadata": {"origin": "upload-file"}, "ContentType": "x/y"})

    head = s3.head_object(Bucket=bucket, Key="small.bin", ChecksumMode="ENABLED")
    assert head["ETag"] == f'"{file_digest(src, "md5")}"'
    assert head["ChecksumCRC32"] == file_crc32_b64(src)
    assert head["Metadata"] == {"origin": "upload-file"}
    assert head["ContentType"] == "x/y"
    dst = tmp_path / "small.copy"
    s3.download_file(bucket, "small.bin", str(dst))
    assert dst.read_bytes() == src.read_bytes()


class OneWayStream(io.RawIOBase):
    """A readable stream that cannot seek or tell, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("seekable", [True, False], ids=["seekable", "one-way-stream"])
def test_upload_fileobj_and_download_fileobj(s3: Any, bucket: str, seekable: bool) -> None:
    data = os.urandom(2 * PART + 777)
    source: Any = io.BytesIO(data) if seekable else OneWayStream(data)

    s3.upload_fileobj(source, bucket, "stream.bin", Config=TRANSFER)

    head = s3.head_object(Bucket=bucket, Key="stream.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')
    out = io.BytesIO()
    s3.download_fileobj(bucket, "stream.bin", out, Config=TRANSFER)
    assert out.getvalue() == data


def test_get_object_with_checksum_mode_returns_and_validates_checksums(
        s3: Any, bucket: str, sent: list[Any]) -> None:
    body = os.urandom(256 * 1024 + 3)
    s3.put_object(Bucket=bucket, Key="default", Body=body)
    s3.put_object(Bucket=bucket, Key="sha256", Body=body, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="sha1", Body=body, ChecksumAlgorithm="SHA1")
    puts = [r for r in sent if r.method == "PUT"]
    assert header(puts[0], "x-amz-checksum-crc32") == crc32_b64(body)  # the default

    got = s3.get_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc32_b64(body)
    assert got["ChecksumType"] == "FULL_OBJECT"
    # botocore validates the body against the returned checksum while it is read.
    assert got["Body"].read() == body

    got = s3.get_object(Bucket=bucket, Key="sha256", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert got["Body"].read() == body
    got = s3.get_object(Bucket=bucket, Key="sha1", ChecksumMode="ENABLED")
    assert got["ChecksumSHA1"] == base64.b64encode(hashlib.sha1(body).digest()).decode()
    assert got["Body"].read() == body

    # botocore asks for (and validates) the checksum on every GetObject by default ...
    plain = s3.get_object(Bucket=bucket, Key="default")
    assert header(sent[-1], "x-amz-checksum-mode") == "ENABLED"
    assert plain["ChecksumCRC32"] == crc32_b64(body)
    assert plain["ETag"] == f'"{md5_hex(body)}"'
    assert plain["Body"].read() == body
    # ... but not on HeadObject: without the mode, no checksum is returned.
    head = s3.head_object(Bucket=bucket, Key="default")
    assert header(sent[-1], "x-amz-checksum-mode") is None
    assert "ChecksumCRC32" not in head
    assert head["ContentLength"] == len(body)


def _as_if_https(url: str) -> urllib.parse.ParseResult:
    return urllib.parse.urlparse(url.replace("http://", "https://", 1))


def test_trailing_checksums_as_sent_over_tls(
        s3: Any, bucket: str, tmp_path: Path, sent: list[Any]) -> None:
    """boto3 to an HTTPS endpoint streams uploads as aws-chunked with a CRC32 trailer.

    botocore picks that mode only when the URL's scheme is https; making it believe so
    produces byte for byte the requests it sends over TLS, here over plain HTTP (a node
    behind a TLS-terminating proxy sees exactly these). They carry ``Transfer-Encoding:
    chunked`` and ``X-Amz-Decoded-Content-Length`` but no ``Content-Length``.
    """
    src = tmp_path / "trailer.bin"
    digest = write_random_file(src, 2 * PART + 5)
    small = os.urandom(70_000)

    with mock.patch.object(botocore.httpchecksum, "urlparse", _as_if_https):
        s3.put_object(Bucket=bucket, Key="single.bin", Body=small)
        s3.upload_file(str(src), bucket, "parts.bin", Config=TRANSFER)

    uploads = [r for r in sent if r.method == "PUT"]
    assert len(uploads) == 4
    for r in uploads:
        assert header(r, "x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        assert header(r, "x-amz-trailer") == "x-amz-checksum-crc32"
        assert header(r, "Content-Encoding") == "aws-chunked"
        assert header(r, "Transfer-Encoding") == "chunked"
        assert header(r, "Content-Length") is None

    head = s3.head_object(Bucket=bucket, Key="parts.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == composite_crc32(src, PART)
    assert head["ETag"] == multipart_etag(src, PART)
    dst = tmp_path / "trailer.copy"
    s3.download_file(bucket, "parts.bin", str(dst), Config=TRANSFER)
    assert file_digest(dst) == digest

    got = s3.get_object(Bucket=bucket, Key="single.bin", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc32_b64(small)
    assert got["ContentLength"] == len(small)  # the aws-chunked framing is not stored
    assert got["Body"].read() == small


@pytest.fixture(scope="module", params=["default", "s3v4"])
def presigner(request: pytest.FixtureRequest, node: Node) -> tuple[Any, str]:
    """A client to presign with, and the query parameter its URLs carry: botocore's default
    for S3 presigning is still Signature Version 2 (``AWSAccessKeyId=...&Signature=...``);
    ``s3v4`` gives ``X-Amz-Signature``."""
    if request.param == "default":
        return node.client(node.access_key, node.secret_key), "AWSAccessKeyId="
    return (node.client(node.access_key, node.secret_key, signature_version="s3v4"),
            "X-Amz-Signature=")


def test_presigned_put_and_get_urls_with_urllib(presigner: tuple[Any, str], s3: Any,
                                                bucket: str) -> None:
    client, marker = presigner
    body = os.urandom(100_000)
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "shared/ünï file.bin",
                              "ContentType": "application/x-test"},
        ExpiresIn=300)
    assert marker in put_url
    request = urllib.request.Request(put_url, data=body, method="PUT",
                                     headers={"Content-Type": "application/x-test"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"] == f'"{md5_hex(body)}"'

    head = s3.head_object(Bucket=bucket, Key="shared/ünï file.bin")
    assert head["ContentType"] == "application/x-test"
    assert head["ContentLength"] == len(body)

    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared/ünï file.bin",
                              "ResponseContentDisposition": 'attachment; filename="x.bin"'},
        ExpiresIn=300)
    with urllib.request.urlopen(get_url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"] == 'attachment; filename="x.bin"'
        assert resp.read() == body

    # The URL is bound to its method: the GET URL does not allow a PUT.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(get_url, data=b"x", method="PUT"),
                               timeout=30)
    assert err.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in err.value.read()
    err.value.close()
