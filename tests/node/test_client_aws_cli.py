"""The aws CLI (v1, the ``awscli`` package) against the real node, as a subprocess.

Only the endpoint differs from what a user would type against Amazon S3. ``s3`` commands are
checked by what they leave in the bucket (seen through boto3) and on disk; ``s3api`` commands
by their parsed JSON output.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.clients import (
    TREE,
    MiB,
    Node,
    bucket_names,
    client_env,
    drop_large_files,
    failure,
    file_digest,
    list_keys,
    md5_hex,
    multipart_etag,
    read_tree,
    remove_bucket,
    run,
    unique_name,
    write_random_file,
    write_tree,
)

AWS = Path(sys.executable).parent / "aws"
#: The CLI's own defaults (8 MB), written down so the multipart expectations below hold.
CHUNK = 8 * MiB

Aws = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def _drop_large_files(tmp_path: Path) -> Iterator[None]:
    yield
    drop_large_files(tmp_path)


@pytest.fixture
def aws(node: Node, tmp_path: Path) -> Aws:
    """Run ``aws --endpoint-url NODE ARGS...``; fails the test with the CLI's stderr on error."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\noutput = json\ns3 =\n"
                      f"  multipart_threshold = {CHUNK}\n  multipart_chunksize = {CHUNK}\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("")
    env = client_env({
        # The aws CLI 1.46.3 (the newest v1) vendors botocore 1.43.62, which after an early
        # final response to a zero-length PUT sent with Expect: 100-continue parses the next
        # response on that connection with the stale status line and hangs until the server
        # closes it (boto/botocore#3755, fixed in botocore 1.43.77). S3 answers such PUTs the
        # same way the node does. This botocore switch drops the Expect header for empty
        # bodies; test_aws_cli_empty_file_then_another_does_not_stall shows the hang.
        "AWS_ACCESS_KEY_ID": node.access_key,
        "AWS_SECRET_ACCESS_KEY": node.secret_key,
        "AWS_DEFAULT_REGION": node.region,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })

    def call(*args: str | Path, check: bool = True, timeout: float = 180,
             env_overrides: dict[str, str] | None = None, stdin: Path | None = None,
             stdout: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run([AWS, "--endpoint-url", node.endpoint, *args], node=node,
                   env={**env, **(env_overrides or {})}, check=check, timeout=timeout,
                   stdin=stdin, stdout=stdout)

    return call


def api(aws: Aws, *args: str | Path) -> Any:
    """An ``s3api`` call's JSON output ({} for the calls that print nothing)."""
    out = aws("s3api", *args).stdout
    return json.loads(out) if out.strip() else {}


def ls_lines(stdout: str) -> dict[str, int]:
    """``aws s3 ls --recursive`` output: key -> size (keys may contain spaces)."""
    out: dict[str, int] = {}
    for line in stdout.splitlines():
        _date, _time, size, key = line.split(maxsplit=3)
        out[key] = int(size)
    return out


# -- s3 ---------------------------------------------------------------------------------------


def test_mb_ls_rb(aws: Aws, s3: Any, tmp_path: Path, node: Node) -> None:
    name = unique_name("cli-mb")
    try:
        assert aws("s3", "mb", f"s3://{name}").stdout.strip() == f"make_bucket: {name}"
        assert name in bucket_names(s3)
        listed = [line.split()[-1] for line in aws("s3", "ls").stdout.splitlines()]
        assert name in listed

        (tmp_path / "f.txt").write_bytes(b"keeps the bucket busy")
        aws("s3", "cp", tmp_path / "f.txt", f"s3://{name}/f.txt", "--only-show-errors")
        refused = aws("s3", "rb", f"s3://{name}", check=False)
        assert refused.returncode != 0, failure(refused, node, "rb of a non-empty bucket")
        assert "BucketNotEmpty" in refused.stderr, failure(refused, node, "wrong error")

        removed = aws("s3", "rb", "--force", f"s3://{name}")
        assert f"remove_bucket: {name}" in removed.stdout
        assert name not in bucket_names(s3)
        listed = [line.split()[-1] for line in aws("s3", "ls").stdout.splitlines()]
        assert name not in listed
    finally:
        remove_bucket(s3, name)


def test_cp_up_and_down_small_and_multipart(aws: Aws, s3: Any, bucket: str,
                                            tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_bytes(b"small and simple\n")
    big = tmp_path / "big.bin"
    big_size = 2 * CHUNK + 4321
    digest = write_random_file(big, big_size)

    aws("s3", "cp", small, f"s3://{bucket}/docs/small.txt", "--only-show-errors",
        "--content-type", "text/plain; charset=utf-8", "--metadata", "origin=aws-cli")
    aws("s3", "cp", big, f"s3://{bucket}/data/big.bin", "--only-show-errors")

    assert list_keys(s3, bucket) == {"docs/small.txt": small.stat().st_size,
                                     "data/big.bin": big_size}
    head = s3.head_object(Bucket=bucket, Key="docs/small.txt")
    assert head["Metadata"] == {"origin": "aws-cli"}
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["ETag"] == f'"{md5_hex(small.read_bytes())}"'
    assert s3.head_object(Bucket=bucket, Key="data/big.bin")["ETag"] == \
        multipart_etag(big, CHUNK)

    # Server-side copy: the CLI copies a large object with UploadPartCopy.
    aws("s3", "cp", f"s3://{bucket}/data/big.bin", f"s3://{bucket}/data/big-copy.bin",
        "--only-show-errors")

    down = tmp_path / "down"
    aws("s3", "cp", f"s3://{bucket}/docs/small.txt", down / "small.txt", "--only-show-errors")
    aws("s3", "cp", f"s3://{bucket}/data/big.bin", down / "big.bin", "--only-show-errors")
    aws("s3", "cp", f"s3://{bucket}/data/big-copy.bin", down / "big-copy.bin",
        "--only-show-errors")
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    assert file_digest(down / "big.bin") == digest
    assert file_digest(down / "big-copy.bin") == digest

    top = aws("s3", "ls", f"s3://{bucket}").stdout.splitlines()
    assert sorted(line.split() for line in top) == [["PRE", "data/"], ["PRE", "docs/"]]
    assert ls_lines(aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout) == {
        "docs/small.txt": small.stat().st_size,
        "data/big.bin": big_size,
        "data/big-copy.bin": big_size,
    }


def test_sync_both_ways_with_changes_and_delete(aws: Aws, s3: Any, bucket: str,
                                                tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_tree(local, TREE)
    remote = f"s3://{bucket}/tree/"

    aws("s3", "sync", local, remote, "--only-show-errors")
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in TREE.items()}
    assert s3.get_object(Bucket=bucket, Key="tree/a/b/ünïcödé näme.txt")["Body"].read() == \
        TREE["a/b/ünïcödé näme.txt"]
    # Pages of 3: continuation tokens between non-ASCII keys, with encoding-type=url.
    assert ls_lines(aws("s3", "ls", "--recursive", "--page-size", "3", remote).stdout) == {
        f"tree/{k}": len(v) for k, v in TREE.items()}

    down = tmp_path / "down"
    aws("s3", "sync", remote, down, "--only-show-errors")
    assert read_tree(down) == TREE

    # Change the local tree: a file grows, one keeps its size but changes (and is newer), one
    # is added and one removed.
    edits = {"top.txt": b"top level, now longer\n",
             "a/one.txt": TREE["a/one.txt"].upper(),
             "a/new file ✓.txt": b"added later\n"}
    write_tree(local, edits)
    changed = {**TREE, **edits}
    del changed["with space/file with spaces.txt"]
    later = time.time() + 120
    os.utime(local / "a/one.txt", (later, later))
    (local / "with space/file with spaces.txt").unlink()

    out = aws("s3", "sync", local, remote, "--delete", "--no-progress").stdout
    assert "delete: " in out
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in changed.items()}
    assert s3.get_object(Bucket=bucket, Key="tree/a/one.txt")["Body"].read() == \
        changed["a/one.txt"]

    # Downloading, the CLI skips a same-size object unless told to compare times exactly
    # (it treats a newer object as "not older than the local copy"; aws-cli issue 3273).
    aws("s3", "sync", remote, down, "--delete", "--exact-timestamps", "--only-show-errors")
    assert read_tree(down) == changed

    aws("s3", "rm", "--recursive", remote, "--only-show-errors")
    assert list_keys(s3, bucket) == {}


def test_cp_streams_from_stdin_and_to_stdout(aws: Aws, s3: Any, bucket: str,
                                             tmp_path: Path) -> None:
    src = tmp_path / "stream.bin"
    size = CHUNK + 999  # from a stream of unknown length, the CLI uploads in parts
    digest = write_random_file(src, size)

    aws("s3", "cp", "-", f"s3://{bucket}/streamed.bin", "--only-show-errors", stdin=src)
    head = s3.head_object(Bucket=bucket, Key="streamed.bin")
    assert head["ContentLength"] == size
    assert head["ETag"] == multipart_etag(src, CHUNK)

    out = tmp_path / "stdout.bin"
    aws("s3", "cp", f"s3://{bucket}/streamed.bin", "-", stdout=out)
    assert file_digest(out) == digest


def composite_sha256(path: Path, part_size: int) -> str:
    """S3's COMPOSITE SHA-256 of a multipart object: SHA-256 of the parts' digests, then -N."""
    digests = b""
    count = 0
    with path.open("rb") as f:
        while block := f.read(part_size):
            digests += hashlib.sha256(block).digest()
            count += 1
    return f"{base64.b64encode(hashlib.sha256(digests).digest()).decode()}-{count}"


def test_cp_with_sha256_checksums_in_parts(aws: Aws, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "summed.bin"
    size = 2 * CHUNK + 5
    digest = write_random_file(src, size)

    aws("s3", "cp", src, f"s3://{bucket}/summed.bin", "--checksum-algorithm", "SHA256",
        "--only-show-errors")

    head = api(aws, "head-object", "--bucket", bucket, "--key", "summed.bin",
               "--checksum-mode", "ENABLED")
    assert head["ChecksumSHA256"] == composite_sha256(src, CHUNK)
    assert head["ChecksumType"] == "COMPOSITE"
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{bucket}/summed.bin", back, "--only-show-errors")
    assert file_digest(back) == digest


def test_sync_between_buckets_and_mv(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    for key, data in TREE.items():
        s3.put_object(Bucket=bucket, Key=f"src/{key}", Body=data)
    other = unique_name("cli-dst")
    s3.create_bucket(Bucket=other)
    try:
        # Server-side: every object is a CopyObject from the other bucket.
        aws("s3", "sync", f"s3://{bucket}/src/", f"s3://{other}/copied/", "--only-show-errors")
        assert list_keys(s3, other) == {f"copied/{k}": len(v) for k, v in TREE.items()}
        assert s3.get_object(Bucket=other, Key="copied/a/b/c/deep.bin")["Body"].read() == \
            TREE["a/b/c/deep.bin"]

        aws("s3", "mv", f"s3://{other}/copied/top.txt", f"s3://{other}/moved/top ✓.txt",
            "--only-show-errors")
        keys = list_keys(s3, other)
        assert "copied/top.txt" not in keys
        assert keys["moved/top ✓.txt"] == len(TREE["top.txt"])
    finally:
        remove_bucket(s3, other)


def test_presign_with_the_sigv2_default_and_with_sigv4(aws: Aws, s3: Any, bucket: str,
                                                       tmp_path: Path) -> None:
    body = "presigned by the aws CLI ✓".encode()
    s3.put_object(Bucket=bucket, Key="shared/ünï file.txt", Body=body)

    # The CLI (v1) presigns with Signature Version 2 unless configured otherwise.
    legacy = aws("s3", "presign", f"s3://{bucket}/shared/ünï file.txt").stdout.strip()
    assert "AWSAccessKeyId=" in legacy and "X-Amz-Signature" not in legacy
    with urllib.request.urlopen(legacy, timeout=30) as resp:
        assert resp.read() == body

    config = tmp_path / "sigv4-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  signature_version = s3v4\n")
    url = aws("s3", "presign", f"s3://{bucket}/shared/ünï file.txt", "--expires-in", "300",
              env_overrides={"AWS_CONFIG_FILE": str(config)}).stdout.strip()
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == body


# -- s3api ------------------------------------------------------------------------------------


def test_s3api_put_head_get_object(aws: Aws, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes("metadata travels with the object ✓\n".encode())
    etag = f'"{md5_hex(body.read_bytes())}"'

    put = api(aws, "put-object", "--bucket", bucket, "--key", "meta/obj.txt", "--body", body,
              "--metadata", "colour=blue,size=large", "--content-type", "text/plain",
              "--cache-control", "max-age=60", "--content-disposition", "inline")
    assert put["ETag"] == etag

    head = api(aws, "head-object", "--bucket", bucket, "--key", "meta/obj.txt")
    assert head["ETag"] == etag
    assert head["ContentLength"] == body.stat().st_size
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "inline"
    assert head["Metadata"] == {"colour": "blue", "size": "large"}

    out = tmp_path / "out.txt"
    got = api(aws, "get-object", "--bucket", bucket, "--key", "meta/obj.txt", out)
    assert got["ETag"] == etag
    assert got["Metadata"] == {"colour": "blue", "size": "large"}
    assert got["ContentLength"] == body.stat().st_size
    assert out.read_bytes() == body.read_bytes()

    ranged = api(aws, "get-object", "--bucket", bucket, "--key", "meta/obj.txt",
                 "--range", "bytes=0-7", tmp_path / "part.txt")
    assert ranged["ContentRange"] == f"bytes 0-7/{body.stat().st_size}"
    assert (tmp_path / "part.txt").read_bytes() == body.read_bytes()[:8]


def test_s3api_list_objects_v2_with_delimiter(aws: Aws, s3: Any, bucket: str) -> None:
    keys = ["a.txt", "dir/x.txt", "dir/y.txt", "dir/sub/z.txt", "other/w.txt", "zz"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    top = api(aws, "list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert [c["Key"] for c in top["Contents"]] == ["a.txt", "zz"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/", "other/"]

    inner = api(aws, "list-objects-v2", "--bucket", bucket, "--delimiter", "/",
                "--prefix", "dir/")
    assert [(c["Key"], c["Size"]) for c in inner["Contents"]] == [
        ("dir/x.txt", 9), ("dir/y.txt", 9)]
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["dir/sub/"]

    # The CLI follows continuation tokens itself: pages of 2 still give every key, in order.
    paged = api(aws, "list-objects-v2", "--bucket", bucket, "--page-size", "2")
    assert [c["Key"] for c in paged["Contents"]] == sorted(keys)


def test_s3api_copy_object_and_tagging(aws: Aws, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src.txt", Body=b"copy me", Metadata={"v": "1"})

    copied = api(aws, "copy-object", "--bucket", bucket, "--key", "dst.txt",
                 "--copy-source", f"{bucket}/src.txt", "--metadata-directive", "REPLACE",
                 "--metadata", "v=2", "--content-type", "text/x-copied")
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5_hex(b"copy me")}"'
    head = api(aws, "head-object", "--bucket", bucket, "--key", "dst.txt")
    assert head["Metadata"] == {"v": "2"}
    assert head["ContentType"] == "text/x-copied"
    assert s3.get_object(Bucket=bucket, Key="dst.txt")["Body"].read() == b"copy me"

    tagging = json.dumps({"TagSet": [{"Key": "project", "Value": "silver lining"},
                                     {"Key": "stage", "Value": "test"}]})
    api(aws, "put-object-tagging", "--bucket", bucket, "--key", "dst.txt",
        "--tagging", tagging)
    tags = api(aws, "get-object-tagging", "--bucket", bucket, "--key", "dst.txt")
    assert sorted((t["Key"], t["Value"]) for t in tags["TagSet"]) == [
        ("project", "silver lining"), ("stage", "test")]


def test_s3api_multipart_upload(aws: Aws, s3: Any, bucket: str, tmp_path: Path) -> None:
    part1 = tmp_path / "part1"
    part2 = tmp_path / "part2"
    write_random_file(part1, 5 * MiB)
    write_random_file(part2, MiB + 17)

    created = api(aws, "create-multipart-upload", "--bucket", bucket, "--key", "mp.bin",
                  "--content-type", "application/x-parts", "--metadata", "kind=multipart")
    upload_id = created["UploadId"]
    assert created["Key"] == "mp.bin"
    assert created["Bucket"] == bucket

    parts = []
    for number, path in ((1, part1), (2, part2)):
        out = api(aws, "upload-part", "--bucket", bucket, "--key", "mp.bin",
                  "--upload-id", upload_id, "--part-number", str(number), "--body", path)
        assert out["ETag"] == f'"{file_digest(path, "md5")}"'
        parts.append({"PartNumber": number, "ETag": out["ETag"]})

    listed = api(aws, "list-parts", "--bucket", bucket, "--key", "mp.bin",
                 "--upload-id", upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [
        (1, 5 * MiB), (2, MiB + 17)]

    manifest = tmp_path / "parts.json"
    manifest.write_text(json.dumps({"Parts": parts}))
    done = api(aws, "complete-multipart-upload", "--bucket", bucket, "--key", "mp.bin",
               "--upload-id", upload_id, "--multipart-upload", f"file://{manifest}")
    joined = part1.read_bytes() + part2.read_bytes()
    both = bytes.fromhex(file_digest(part1, "md5")) + bytes.fromhex(file_digest(part2, "md5"))
    assert done["ETag"] == f'"{md5_hex(both)}-2"'
    assert done["Key"] == "mp.bin"

    head = api(aws, "head-object", "--bucket", bucket, "--key", "mp.bin")
    assert head["ContentLength"] == len(joined)
    assert head["ContentType"] == "application/x-parts"
    assert head["Metadata"] == {"kind": "multipart"}
    assert s3.get_object(Bucket=bucket, Key="mp.bin")["Body"].read() == joined


def test_s3api_delete_objects(aws: Aws, s3: Any, bucket: str) -> None:
    for key in ("d/1", "d/2", "d/3 with space", "keep"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    request = json.dumps({"Objects": [{"Key": "d/1"}, {"Key": "d/2"}, {"Key": "d/3 with space"},
                                      {"Key": "never-existed"}]})
    out = api(aws, "delete-objects", "--bucket", bucket, "--delete", request)
    # Deleting a key that does not exist succeeds too, as in S3.
    assert sorted(d["Key"] for d in out["Deleted"]) == [
        "d/1", "d/2", "d/3 with space", "never-existed"]
    assert "Errors" not in out
    assert list_keys(s3, bucket) == {"keep": 1}


# -- errors -----------------------------------------------------------------------------------


def test_errors_reach_the_cli(aws: Aws, bucket: str, node: Node, tmp_path: Path) -> None:
    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert missing.returncode in {254, 255}, \
        failure(missing, node, "head-object of a missing key should fail")
    assert "(404)" in missing.stderr and "Not Found" in missing.stderr, \
        failure(missing, node, "head-object of a missing key should say 404")

    got = aws("s3api", "get-object", "--bucket", bucket, "--key", "nope", tmp_path / "x",
              check=False)
    assert got.returncode != 0
    assert "NoSuchKey" in got.stderr, failure(got, node, "get-object should say NoSuchKey")

    nobucket = unique_name("nonexistent")
    listed = aws("s3", "ls", f"s3://{nobucket}", check=False)
    assert listed.returncode != 0
    assert "NoSuchBucket" in listed.stderr, failure(listed, node, "ls should say NoSuchBucket")


def test_aws_cli_empty_file_then_another_does_not_stall(aws: Aws, s3: Any, bucket: str,
                                                       tmp_path: Path) -> None:
    """An empty file among others, in one sync over one connection, with the CLI's default
    Expect: 100-continue on every PUT.

    Had the node answered the empty PUT at once with 200 and no 100 Continue (which RFC 9110
    allows, and S3 does), the CLI's botocore (boto/botocore#3755) would keep that 200 status
    line for the next response on the connection, read the real status line as a header,
    and wait until the node dropped the idle connection (30 s). The node sends 100 Continue
    for empty bodies too, so the CLI's default works.
    """
    local = tmp_path / "pair"
    files = {f"{i}{'-empty' if i % 2 else ''}.txt": b"" if i % 2 else b"full\n" * i
             for i in range(8)}
    write_tree(local, files)
    config = tmp_path / "one-connection-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 1\n")
    aws("s3", "sync", local, f"s3://{bucket}/pair/", "--only-show-errors", timeout=10,
        env_overrides={"AWS_CONFIG_FILE": str(config)})
    assert list_keys(s3, bucket) == {f"pair/{k}": len(v) for k, v in files.items()}
