"""Helpers for the real-client tests: subprocesses with useful failures, file trees, buckets.

The client tests (``test_client_*.py``) drive the session's node with the tools a buyer would
use unchanged: boto3, the aws CLI, rclone and s3cmd. When a client fails, the assertion message
carries the command, its exit code, the tail of its stdout and stderr, and the tail of the
node's log, so the failing request can be found without re-running anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

MiB = 1024 * 1024

#: A small tree in the shapes that trip up clients and servers: nesting, spaces, non-ASCII
#: (composed and CJK), characters that need percent-encoding in a path or a query (``+``,
#: ``&``, ``=``, ``%``), an empty file and a file bigger than one read buffer.
TREE: dict[str, bytes] = {
    "top.txt": b"top level\n",
    "empty.txt": b"",
    "a/one.txt": b"one\n" * 10,
    "a/b/c/deep.bin": bytes(range(256)) * 300,
    "a/b/ünïcödé näme.txt": "grüße, ünïcödé\n".encode(),
    "with space/file with spaces.txt": b"spaces in the directory and the name\n",
    "日本語/ファイル.txt": "こんにちは\n".encode(),
    "odd/plus+and&equals=percent%41.txt": b"characters that need escaping\n",
}


class Node(Protocol):
    """What the tests need from conftest's ``RunningNode``."""

    endpoint: str
    port: int
    region: str
    access_key: str
    secret_key: str
    log_path: Path

    def client(self, access_key: str, secret_key: str, **config: Any) -> Any: ...


def unique_name(prefix: str) -> str:
    """A bucket name nobody else in the session uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def node_log_tail(node: Node, chars: int = 3000) -> str:
    try:
        return node.log_path.read_text(errors="replace")[-chars:]
    except OSError as exc:  # pragma: no cover - the fixture always creates it
        return f"(no node log: {exc})"


def client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a client subprocess: ours, minus anything that could redirect it.

    ``AWS_*`` variables from the machine (profiles, CA bundles: rclone 1.60 refuses to start
    when ``AWS_CA_BUNDLE`` is set) and proxy settings are dropped; the tests target
    127.0.0.1 only. A UTF-8 locale lets the clients print non-ASCII keys.
    """
    drop = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
                "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    env.update(extra or {})
    return env


def run(args: Sequence[str | Path], *, node: Node, env: Mapping[str, str], timeout: float = 120,
        cwd: Path | None = None, check: bool = True, stdin: Path | None = None,
        stdout: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client; on failure (or timeout) raise AssertionError with everything needed.

    stdin, if given, is a file fed to the client's standard input; stdout, if given, is a file
    that receives its standard output as bytes (the result's stdout is then empty).
    """
    argv = [str(a) for a in args]
    if shutil.which(argv[0]) is None:
        raise AssertionError(f"{argv[0]} is not installed; the client tests need it "
                             "(Debian: apt-get install rclone s3cmd; aws: pip install awscli)")
    try:
        with (stdin.open("rb") if stdin else open(os.devnull, "rb") as source,
              stdout.open("wb") if stdout else contextlib.nullcontext() as sink):
            proc = subprocess.run(argv, env=dict(env), cwd=cwd, stdin=source,
                                  stdout=sink if sink else subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                  errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        raise AssertionError(_report(argv, f"timed out after {timeout} s", out, err, node)) \
            from None
    if proc.stdout is None:
        proc.stdout = ""
    if check and proc.returncode != 0:
        raise AssertionError(_report(argv, f"exit code {proc.returncode}", proc.stdout,
                                     proc.stderr, node))
    return proc


def failure(proc: subprocess.CompletedProcess[str], node: Node, what: str) -> str:
    """An assertion message for a finished client run that did not do what was expected."""
    return _report([str(a) for a in proc.args], f"{what} (exit code {proc.returncode})",
                   proc.stdout, proc.stderr, node)


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _report(argv: list[str], what: str, stdout: str, stderr: str, node: Node) -> str:
    return (
        f"client command failed: {what}\n$ {' '.join(argv)}\n"
        f"--- stdout (tail) ---\n{stdout[-4000:]}\n"
        f"--- stderr (tail) ---\n{stderr[-6000:]}\n"
        f"--- node log (tail) ---\n{node_log_tail(node)}"
    )


# -- files and trees ----------------------------------------------------------------------------


def write_tree(root: Path, files: Mapping[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root, by its relative POSIX path (for small trees)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_random_file(path: Path, size: int) -> str:
    """Write size random bytes in 1 MiB blocks; return their SHA-256 (never all in memory)."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(MiB, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def drop_large_files(root: Path, threshold: int = MiB) -> None:
    """Delete files of threshold bytes or more under root: pytest keeps recent tmp dirs, and
    the client tests write hundreds of MiB per run."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= threshold:
            path.unlink()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives an object uploaded from path in parts of part_size bytes."""
    md5s = b""
    count = 0
    with path.open("rb") as f:
        while block := f.read(part_size):
            md5s += hashlib.md5(block).digest()
            count += 1
    return f'"{hashlib.md5(md5s).hexdigest()}-{count}"'


# -- buckets, seen through boto3 ----------------------------------------------------------------


def list_keys(s3: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every key under prefix with its size, through boto3 (the reference client)."""
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["Size"]
    return out


def bucket_names(s3: Any) -> set[str]:
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


def remove_bucket(s3: Any, bucket: str) -> None:
    """Delete a bucket and whatever is in it; a bucket that is already gone is fine."""
    if bucket not in bucket_names(s3):
        return
    for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
