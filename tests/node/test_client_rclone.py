"""rclone (the Debian package) against the real node, with a config written for the test.

rclone is configured as a generic S3 provider with path-style addressing, the way a user
would add any S3-compatible store. Retries are turned off so that a failing request fails
the test instead of being retried away.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
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

RCLONE = shutil.which("rclone") or "/usr/bin/rclone"
REMOTE = "node"

Rclone = Callable[..., subprocess.CompletedProcess[str]]



@pytest.fixture(autouse=True)
def _drop_large_files(tmp_path: Path) -> Iterator[None]:
    yield
    drop_large_files(tmp_path)


@pytest.fixture
def rclone(node: Node, tmp_path: Path) -> Rclone:
    config = tmp_path / "rclone.conf"
    config.write_text(
        f"[{REMOTE}]\n"
        "type = s3\n"
        "provider = Other\n"
        f"endpoint = {node.endpoint}\n"
        f"access_key_id = {node.access_key}\n"
        f"secret_access_key = {node.secret_key}\n"
        f"region = {node.region}\n"
        "force_path_style = true\n"
    )
    env = client_env({"RCLONE_CONFIG": str(config)})

    def call(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run([RCLONE, "--config", config, "--retries", "1", "--low-level-retries", "1",
                    "--contimeout", "10s", "--timeout", "60s", *args],
                   node=node, env=env, timeout=timeout)

    return call


def lsjson(rclone: Rclone, path: str) -> dict[str, dict[str, Any]]:
    entries = json.loads(rclone("lsjson", "-R", "--files-only", "--hash", path).stdout)
    return {e["Path"]: e for e in entries}


def md5sums(stdout: str) -> dict[str, str]:
    """``rclone md5sum`` output: path -> md5 hex."""
    out = {}
    for line in stdout.splitlines():
        digest, path = line.split("  ", 1)
        out[path] = digest
    return out


def test_copy_list_sync_check_copy_down_delete(rclone: Rclone, s3: Any, bucket: str,
                                               tmp_path: Path) -> None:
    local = tmp_path / "local"
    write_tree(local, TREE)
    remote = f"{REMOTE}:{bucket}/tree"

    rclone("copy", local, remote)
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in TREE.items()}

    listed = lsjson(rclone, remote)
    assert {p: e["Size"] for p, e in listed.items()} == {k: len(v) for k, v in TREE.items()}
    # rclone reads MD5s of single-part objects from their ETags.
    assert {p: e["Hashes"]["md5"] for p, e in listed.items()} == {
        k: md5_hex(v) for k, v in TREE.items()}
    ls = {}
    for line in rclone("ls", f"{REMOTE}:{bucket}").stdout.splitlines():
        size, path = line.strip().split(" ", 1)
        ls[path] = int(size)
    assert ls == {f"tree/{k}": len(v) for k, v in TREE.items()}
    rclone("check", local, remote)
    # Small pages: ListObjects v1 markers and ListObjectsV2 continuation tokens between
    # non-ASCII keys (rclone defaults to v1 for provider Other).
    for version in ("1", "2"):
        paged = rclone("lsf", "-R", "--files-only", "--s3-list-chunk", "3",
                       "--s3-list-version", version, remote).stdout.splitlines()
        assert sorted(paged) == sorted(TREE), f"list version {version}"

    # Change the local tree: a file grows, one keeps its size but not its bytes, one is added
    # and one removed; then sync.
    edits = {"top.txt": b"top level, now longer\n",
             "a/one.txt": TREE["a/one.txt"].upper(),
             "a/new file ✓.txt": b"added later\n"}
    write_tree(local, edits)
    (local / "with space/file with spaces.txt").unlink()
    changed = {**TREE, **edits}
    del changed["with space/file with spaces.txt"]

    rclone("sync", local, remote)
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in changed.items()}
    assert s3.get_object(Bucket=bucket, Key="tree/a/one.txt")["Body"].read() == \
        changed["a/one.txt"]
    rclone("check", local, remote)
    assert md5sums(rclone("md5sum", remote).stdout) == {
        k: md5_hex(v) for k, v in changed.items()}

    down = tmp_path / "down"
    rclone("copy", remote, down)
    assert read_tree(down) == changed

    rclone("delete", f"{remote}/a")
    assert list_keys(s3, bucket) == {f"tree/{k}": len(v) for k, v in changed.items()
                                     if not k.startswith("a/")}
    rclone("purge", remote)
    assert list_keys(s3, bucket) == {}
    assert bucket in bucket_names(s3), "purging a directory must not remove the bucket"


def test_mkdir_lsd_and_purge_a_bucket(rclone: Rclone, s3: Any, tmp_path: Path) -> None:
    name = unique_name("rclone")
    try:
        rclone("mkdir", f"{REMOTE}:{name}")
        assert name in bucket_names(s3)
        buckets = [line.split()[-1] for line in rclone("lsd", f"{REMOTE}:").stdout.splitlines()]
        assert name in buckets

        (tmp_path / "f.txt").write_bytes(b"in a bucket rclone made\n")
        rclone("copy", tmp_path / "f.txt", f"{REMOTE}:{name}/sub")
        assert list_keys(s3, name) == {"sub/f.txt": 24}

        rclone("purge", f"{REMOTE}:{name}")
        assert name not in bucket_names(s3)
    finally:
        remove_bucket(s3, name)


def test_large_object_multipart_copy_check_and_back(rclone: Rclone, s3: Any, bucket: str,
                                                    tmp_path: Path) -> None:
    src_dir = tmp_path / "up"
    src_dir.mkdir()
    big = src_dir / "big.bin"
    size = 100 * MiB + 4097
    digest = write_random_file(big, size)
    md5 = file_digest(big, "md5")

    rclone("copy", src_dir, f"{REMOTE}:{bucket}/large",
           "--s3-upload-cutoff", "16M", "--s3-chunk-size", "8M", timeout=300)

    head = s3.head_object(Bucket=bucket, Key="large/big.bin")
    assert head["ContentLength"] == size
    assert head["ETag"] == multipart_etag(big, 8 * MiB)  # 13 parts of 8 MiB
    # A multipart ETag is not an MD5, so rclone keeps the MD5 in metadata.
    assert head["Metadata"]["md5chksum"] == base64.b64encode(bytes.fromhex(md5)).decode()

    assert md5sums(rclone("md5sum", f"{REMOTE}:{bucket}/large").stdout) == {"big.bin": md5}
    rclone("check", src_dir, f"{REMOTE}:{bucket}/large")

    down = tmp_path / "down"
    rclone("copy", f"{REMOTE}:{bucket}/large", down, timeout=300)
    assert (down / "big.bin").stat().st_size == size
    assert file_digest(down / "big.bin") == digest


def test_metadata_server_side_move_and_ranged_cat(rclone: Rclone, s3: Any, bucket: str,
                                                  tmp_path: Path) -> None:
    src = tmp_path / "note.txt"
    src.write_bytes(b"0123456789 metadata travels\n")

    rclone("copyto", src, f"{REMOTE}:{bucket}/notes/note.txt", "--metadata",
           "--metadata-set", "colour=blue", "--header-upload", "Cache-Control: max-age=5")
    head = s3.head_object(Bucket=bucket, Key="notes/note.txt")
    assert head["Metadata"]["colour"] == "blue"
    assert "mtime" in head["Metadata"]  # rclone keeps the file's mtime in metadata
    assert head["CacheControl"] == "max-age=5"

    # A server-side move: CopyObject (metadata directive COPY) then DeleteObject.
    rclone("moveto", f"{REMOTE}:{bucket}/notes/note.txt", f"{REMOTE}:{bucket}/moved/ünï.txt")
    assert list_keys(s3, bucket) == {"moved/ünï.txt": src.stat().st_size}
    moved = s3.head_object(Bucket=bucket, Key="moved/ünï.txt")
    assert moved["Metadata"] == head["Metadata"]
    assert moved["CacheControl"] == "max-age=5"
    listed = json.loads(rclone("lsjson", "--metadata", f"{REMOTE}:{bucket}/moved").stdout)
    assert listed[0]["Metadata"]["colour"] == "blue"

    # rclone cat with an offset and a count is a ranged GET.
    part = rclone("cat", "--offset", "3", "--count", "4", f"{REMOTE}:{bucket}/moved/ünï.txt")
    assert part.stdout == "3456"
