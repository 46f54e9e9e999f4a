"""Per-account quotas (set by the operator while the node runs) and size limits: refused
with a clear S3 error, nothing partially written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NodeProcess, RunningNode, cli
from tests.node.s3util import error_of

MiB = 1024 * 1024


def _usage(node: NodeProcess, account: str) -> dict[str, Any]:
    rows = cli("accounts", "list", data_dir=node.data_dir)
    return next(r for r in rows if r["name"] == account)


def _blob_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "blobs").rglob("*") if p.is_file())


@pytest.fixture
def quota_account(node: RunningNode) -> Iterator[tuple[str, Any]]:
    name = f"q{uuid.uuid4().hex[:10]}"
    ak, sk = node.new_credentials(name)
    s3 = node.client(ak, sk)
    bucket = f"quota-{name}"
    s3.create_bucket(Bucket=bucket)
    yield name, s3
    cli("accounts", "delete", name, "--purge", data_dir=node.data_dir)


def test_byte_and_object_quotas(node: RunningNode, quota_account: tuple[str, Any]) -> None:
    name, s3 = quota_account
    bucket = f"quota-{name}"
    out = cli("accounts", "set-quota", name, "--max-bytes", "10000", "--max-objects", "3",
              data_dir=node.data_dir)
    assert (out["quota_bytes"], out["quota_objects"]) == (10000, 3)
    s3.put_object(Bucket=bucket, Key="a", Body=b"a" * 6000)
    code, status = error_of(s3.put_object, Bucket=bucket, Key="b", Body=b"b" * 5000)
    assert (code, status) == ("QuotaExceeded", 403)
    assert error_of(s3.head_object, Bucket=bucket, Key="b") == ("404", 404)
    assert _usage(node, name)["bytes_used"] == 6000
    # an overwrite is charged only the difference
    s3.put_object(Bucket=bucket, Key="a", Body=b"a" * 9000)
    assert _usage(node, name)["bytes_used"] == 9000
    # a copy is charged like a write
    assert error_of(s3.copy_object, Bucket=bucket, Key="c", CopySource=f"{bucket}/a") == (
        "QuotaExceeded", 403)
    s3.put_object(Bucket=bucket, Key="b", Body=b"b" * 500)
    s3.put_object(Bucket=bucket, Key="c", Body=b"c" * 100)
    assert error_of(s3.put_object, Bucket=bucket, Key="d", Body=b"") == ("QuotaExceeded", 403)
    usage = _usage(node, name)
    assert (usage["bytes_used"], usage["objects_used"]) == (9600, 3)
    # deleting frees the quota
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    assert _usage(node, name)["bytes_used"] == 100
    s3.put_object(Bucket=bucket, Key="d", Body=b"d" * 9000)
    # clearing the quota lifts the limit
    cli("accounts", "set-quota", name, data_dir=node.data_dir)
    s3.put_object(Bucket=bucket, Key="e", Body=b"e" * 20000)
    assert _usage(node, name)["objects_used"] == 3


def test_multipart_completion_over_quota(node: RunningNode,
                                         quota_account: tuple[str, Any]) -> None:
    name, s3 = quota_account
    bucket = f"quota-{name}"
    cli("accounts", "set-quota", name, "--max-bytes", str(6 * MiB), data_dir=node.data_dir)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                        Body=b"1" * (5 * MiB))["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2,
                        Body=b"2" * (2 * MiB))["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}
    assert error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
                    MultipartUpload=parts) == ("QuotaExceeded", 403)
    assert error_of(s3.head_object, Bucket=bucket, Key="mp") == ("404", 404)
    # the upload is intact: completing with fewer parts fits
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                 MultipartUpload={"Parts": parts["Parts"][:1]})
    assert s3.head_object(Bucket=bucket, Key="mp")["ContentLength"] == 5 * MiB
    assert _usage(node, name)["bytes_used"] == 5 * MiB


def test_set_quota_errors(node: RunningNode) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "silverlining"
    out = subprocess.run([str(exe), "accounts", "set-quota", "nobody-here", "--max-bytes", "1",
                          "--data-dir", str(node.data_dir)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "no account named 'nobody-here'" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([str(exe), "accounts", "set-quota", "tester", "--max-bytes", "-5",
                          "--data-dir", str(node.data_dir)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def small_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    n = RunningNode(tmp_path_factory.mktemp("small") / "data",
                    extra_args=("--max-object-size", str(6 * MiB)))
    n.access_key, n.secret_key = n.new_credentials("small")
    n.start()
    yield n
    n.stop()


def test_object_size_limit(small_node: RunningNode) -> None:
    s3 = small_node.client(small_node.access_key, small_node.secret_key)
    s3.create_bucket(Bucket="limits")
    s3.put_object(Bucket="limits", Key="ok", Body=b"x" * (6 * MiB))
    before = _blob_bytes(small_node.data_dir)
    assert error_of(s3.put_object, Bucket="limits", Key="big",
                    Body=b"x" * (6 * MiB + 1)) == ("EntityTooLarge", 400)
    uid = s3.create_multipart_upload(Bucket="limits", Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket="limits", Key="mp", UploadId=uid, PartNumber=1,
                        Body=b"1" * (5 * MiB))["ETag"]
    e2 = s3.upload_part(Bucket="limits", Key="mp", UploadId=uid, PartNumber=2,
                        Body=b"2" * (2 * MiB))["ETag"]
    assert error_of(s3.complete_multipart_upload, Bucket="limits", Key="mp", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                               {"PartNumber": 2, "ETag": e2}]}) == (
        "EntityTooLarge", 400)
    s3.abort_multipart_upload(Bucket="limits", Key="mp", UploadId=uid)
    assert _blob_bytes(small_node.data_dir) == before
    assert list((small_node.data_dir / "tmp").iterdir()) == []
