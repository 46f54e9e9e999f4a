"""s3cmd (the Debian package) against the real node, with a config file written for the test.

``host_bucket`` without ``%(bucket)s`` makes s3cmd address buckets path-style; ``signature_v2 =
False`` makes it sign with SigV4.
"""

from __future__ import annotations

import re
import shutil
import subprocess
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

S3CMD = shutil.which("s3cmd") or "/usr/bin/s3cmd"

S3cmd = Callable[..., subprocess.CompletedProcess[str]]



@pytest.fixture(autouse=True)
def _drop_large_files(tmp_path: Path) -> Iterator[None]:
    yield
    drop_large_files(tmp_path)


@pytest.fixture
def s3cmd(node: Node, tmp_path: Path) -> S3cmd:
    config = tmp_path / "s3cfg"
    host = f"127.0.0.1:{node.port}"
    config.write_text(
        "[default]\n"
        f"access_key = {node.access_key}\n"
        f"secret_key = {node.secret_key}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        f"bucket_location = {node.region}\n"
        "proxy_host =\n"
    )
    env = client_env({"HOME": str(tmp_path)})  # no ~/.s3cfg of the machine's

    def call(*args: str | Path, timeout: float = 180, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return run([S3CMD, "-c", config, "--no-progress", *args], node=node, env=env,
                   timeout=timeout, check=check)

    return call


def ls_objects(stdout: str) -> dict[str, int]:
    """``s3cmd ls``/``la`` object lines: s3:// URL -> size (DIR lines and blanks skipped)."""
    out: dict[str, int] = {}
    for line in stdout.splitlines():
        m = re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d\s+(\d+)\s+(s3://.*)$", line)
        if m:
            out[m[2]] = int(m[1])
    return out


def info_fields(stdout: str) -> dict[str, str]:
    fields = {}
    for line in stdout.splitlines()[1:]:
        name, _, value = line.strip().partition(":")
        fields[name.strip()] = value.strip()
    return fields


def test_mb_put_ls_la_get_info_del_rb(s3cmd: S3cmd, s3: Any, tmp_path: Path) -> None:
    name = unique_name("s3cmd")
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file for s3cmd\n")
    big = tmp_path / "big.bin"
    big_size = 30 * MiB + 1000
    digest = write_random_file(big, big_size)
    try:
        assert f"Bucket 's3://{name}/' created" in s3cmd("mb", f"s3://{name}").stdout
        assert name in bucket_names(s3)

        s3cmd("put", small, f"s3://{name}/small.txt")
        s3cmd("put", big, f"s3://{name}/data/big.bin", "--multipart-chunk-size-mb=5")
        assert list_keys(s3, name) == {"small.txt": small.stat().st_size,
                                       "data/big.bin": big_size}
        head = s3.head_object(Bucket=name, Key="data/big.bin")
        assert head["ETag"] == multipart_etag(big, 5 * MiB)  # 7 parts
        assert s3.head_object(Bucket=name, Key="small.txt")["ETag"] == \
            f'"{md5_hex(small.read_bytes())}"'

        assert f"s3://{name}" in s3cmd("ls").stdout.split()
        top = s3cmd("ls", f"s3://{name}").stdout
        assert ls_objects(top) == {f"s3://{name}/small.txt": small.stat().st_size}
        assert ["DIR", f"s3://{name}/data/"] in [line.split() for line in top.splitlines()]
        every = s3cmd("la").stdout  # the top level of every bucket of the account
        assert ls_objects(every)[f"s3://{name}/small.txt"] == small.stat().st_size
        assert ["DIR", f"s3://{name}/data/"] in [line.split() for line in every.splitlines()]
        recursive = ls_objects(s3cmd("ls", "--recursive", f"s3://{name}").stdout)
        assert recursive == {f"s3://{name}/small.txt": small.stat().st_size,
                             f"s3://{name}/data/big.bin": big_size}

        down = tmp_path / "down"
        down.mkdir()
        s3cmd("get", f"s3://{name}/small.txt", down / "small.txt")
        s3cmd("get", f"s3://{name}/data/big.bin", down / "big.bin")
        assert (down / "small.txt").read_bytes() == small.read_bytes()
        assert file_digest(down / "big.bin") == digest

        info = info_fields(s3cmd("info", f"s3://{name}/data/big.bin").stdout)
        assert info["File size"] == str(big_size)
        assert info["MD5 sum"] == file_digest(big, "md5")  # from s3cmd's own metadata
        assert "md5:" + file_digest(big, "md5") in info["x-amz-meta-s3cmd-attrs"]
        bucket_info = info_fields(s3cmd("info", f"s3://{name}").stdout)
        assert bucket_info["Location"] == "us-east-1"

        s3cmd("del", f"s3://{name}/small.txt")
        assert list_keys(s3, name) == {"data/big.bin": big_size}
        s3cmd("del", "--recursive", "--force", f"s3://{name}")
        assert list_keys(s3, name) == {}
        assert f"Bucket 's3://{name}/' removed" in s3cmd("rb", f"s3://{name}").stdout
        assert name not in bucket_names(s3)
    finally:
        remove_bucket(s3, name)


def test_sync_both_ways_with_changes_and_delete(s3cmd: S3cmd, s3: Any, bucket: str,
                                                tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_tree(local, TREE)
    remote = f"s3://{bucket}/tree/"

    s3cmd("sync", f"{local}/", remote)
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in TREE.items()}
    assert s3.get_object(Bucket=bucket, Key="tree/日本語/ファイル.txt")["Body"].read() == \
        TREE["日本語/ファイル.txt"]

    down = tmp_path / "down"
    s3cmd("sync", remote, f"{down}/")
    assert read_tree(down) == TREE

    edits = {"top.txt": b"top level, now longer\n",
             "a/one.txt": TREE["a/one.txt"].upper(),
             "a/new file ✓.txt": b"added later\n"}
    write_tree(local, edits)
    (local / "with space/file with spaces.txt").unlink()
    changed = {**TREE, **edits}
    del changed["with space/file with spaces.txt"]

    s3cmd("sync", "--delete-removed", f"{local}/", remote)
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in changed.items()}
    assert s3.get_object(Bucket=bucket, Key="tree/a/one.txt")["Body"].read() == \
        changed["a/one.txt"]

    s3cmd("sync", "--delete-removed", remote, f"{down}/")
    assert read_tree(down) == changed


def test_headers_copy_modify_move_du_and_signurl(s3cmd: S3cmd, s3: Any, bucket: str,
                                                 tmp_path: Path) -> None:
    src = tmp_path / "h.txt"
    src.write_bytes(b"headers and copies\n")

    s3cmd("put", src, f"s3://{bucket}/h.txt", "--mime-type=text/x-custom",
          "--add-header=Cache-Control: max-age=9", "--add-header=x-amz-meta-colour: blue")
    head = s3.head_object(Bucket=bucket, Key="h.txt")
    assert head["ContentType"] == "text/x-custom"
    assert head["CacheControl"] == "max-age=9"
    assert head["Metadata"]["colour"] == "blue"

    s3cmd("cp", f"s3://{bucket}/h.txt", f"s3://{bucket}/copy.txt")
    assert s3.head_object(Bucket=bucket, Key="copy.txt")["Metadata"]["colour"] == "blue"
    # modify: a copy of the object onto itself with new headers (metadata directive REPLACE).
    s3cmd("modify", f"s3://{bucket}/copy.txt", "--mime-type=text/y-changed",
          "--add-header=Cache-Control: no-cache")
    changed = s3.head_object(Bucket=bucket, Key="copy.txt")
    assert changed["ContentType"] == "text/y-changed"
    assert changed["CacheControl"] == "no-cache"
    assert changed["Metadata"]["colour"] == "blue"
    assert s3.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == src.read_bytes()

    s3cmd("mv", f"s3://{bucket}/copy.txt", f"s3://{bucket}/moved/ünï.txt")
    assert list_keys(s3, bucket) == {"h.txt": src.stat().st_size,
                                     "moved/ünï.txt": src.stat().st_size}
    du = s3cmd("du", f"s3://{bucket}").stdout.split()
    assert du[:3] == [str(2 * src.stat().st_size), "2", "objects"]

    # signurl makes a Signature Version 2 query-string URL.
    url = s3cmd("signurl", f"s3://{bucket}/moved/ünï.txt", "+300").stdout.strip()
    assert "Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == src.read_bytes()


def test_multipart_listing_and_abort(s3cmd: S3cmd, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pending/big.bin")["UploadId"]

    listed = s3cmd("multipart", f"s3://{bucket}").stdout
    assert f"s3://{bucket}/pending/big.bin\t{upload_id}" in listed

    s3cmd("abortmp", f"s3://{bucket}/pending/big.bin", upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_public_acl_is_not_silently_ignored(s3cmd: S3cmd, s3: Any, bucket: str, node: Node,
                                            tmp_path: Path) -> None:
    """``put --acl-public`` sends ``x-amz-acl: public-read``. The node has no ACLs, so the
    object would not be public: it must refuse (S3 with ACLs disabled, the default for new
    buckets, answers 400 AccessControlListNotSupported), not report success.

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-ownership-error-responses.html
    """
    src = tmp_path / "public.txt"
    src.write_bytes(b"meant for everyone\n")
    put = s3cmd("put", "--acl-public", src, f"s3://{bucket}/public.txt", check=False)
    assert put.returncode != 0, failure(put, node, "a public-read ACL was accepted and ignored")
    assert "AccessControlListNotSupported" in put.stderr or "NotImplemented" in put.stderr, \
        failure(put, node, "wrong error for an unsupported ACL")
    assert list_keys(s3, bucket) == {}
