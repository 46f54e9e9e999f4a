"""Consistency: what a reader sees right after, and while, someone writes.

S3 has been strongly consistent since December 2020
(https://aws.amazon.com/s3/consistency/); buyers' code relies on it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from functools import partial

from silverlining.core.context import CheckContext, quoted_md5
from silverlining.core.registry import Level, check


@check(
    "s3.consistency.read-after-write",
    Level.S3_BASIC,
    "A GET right after a PUT, an overwrite or a delete sees that write, every time.",
)
def read_after_write(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    for round_number in range(10):
        key = f"raw-{round_number}"
        first = f"first write {round_number}".encode()
        ctx.put(bucket, key, first)
        data, _ = ctx.get(bucket, key)
        ctx.expect_bytes(data, first, f"the body right after creating {key}")
        second = f"second write {round_number}, longer than the first".encode()
        ctx.put(bucket, key, second)
        data, got = ctx.get(bucket, key)
        ctx.expect_bytes(data, second, f"the body right after overwriting {key}")
        ctx.expect_equal(got.get("ETag"), quoted_md5(second), f"the ETag after overwriting {key}")
        ctx.s3.delete_object(Bucket=bucket, Key=key)
        ctx.expect_error(
            partial(ctx.s3.head_object, Bucket=bucket, Key=key),
            404,
            None,
            f"HeadObject of {key} right after deleting it",
        )


@check(
    "s3.consistency.list-after-write",
    Level.S3_BASIC,
    "A listing right after a PUT shows the new key, and right after a delete no longer does.",
)
def list_after_write(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    expected: list[str] = []
    for round_number in range(10):
        key = f"law-{round_number:02d}"
        ctx.put(bucket, key, b"listed")
        expected.append(key)
        listed = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        ctx.expect_equal(listed, expected, f"the keys right after creating {key}")
    for key in list(expected):
        ctx.s3.delete_object(Bucket=bucket, Key=key)
        expected.remove(key)
        listed = [o["Key"] for o in ctx.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        ctx.expect_equal(listed, expected, f"the keys right after deleting {key}")


#: Size of each version of the overwritten object: large enough that a non-atomic overwrite
#: would be caught part-way (several socket reads), small enough to rewrite many times.
VERSION_SIZE = 1024 * 1024
BLOCK = 16
OVERWRITE_SECONDS = 2.0
READERS = 3


def version_body(version: int) -> bytes:
    """A body made of one 16-byte block repeated, each block naming ``version``."""
    block = f"<version {version:06d}>".encode()
    assert len(block) == BLOCK
    return block * (VERSION_SIZE // BLOCK)


def versions_in(body: bytes) -> list[int]:
    """The distinct versions whose blocks make up ``body``, in order of first appearance."""
    seen: list[int] = []
    for offset in range(0, len(body), BLOCK):
        block = body[offset : offset + BLOCK]
        try:
            number = int(block[9:15])
        except ValueError:
            number = -1
        if number not in seen:
            seen.append(number)
    return seen


@dataclass
class _ReaderLog:
    reads: int = 0
    versions: set[int] = field(default_factory=set)
    problem: tuple[str, str, str] | None = None  # request, expected, got


@check(
    "s3.consistency.overwrite-atomic",
    Level.S3_FULL,
    "While an object is overwritten again and again, concurrent readers always get one "
    "whole version (never a mix) and never an older version after a newer one.",
    weight=5,
)
def overwrite_atomic(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    key = "contended.bin"
    ctx.put(bucket, key, version_body(0))
    stop = threading.Event()
    latest = [0]
    etags = {0: quoted_md5(version_body(0))}
    lock = threading.Lock()

    def reader(log: _ReaderLog) -> None:
        newest_seen = -1
        while not stop.is_set() and log.problem is None:
            request = f"GET /{bucket}/{key} (concurrent reader)"
            try:
                data, got = ctx.get(bucket, key)
            except Exception as error:  # report it, the writer goes on
                log.problem = (request, "a successful GET", f"{type(error).__name__}: {error}")
                return
            log.reads += 1
            found = versions_in(data)
            if len(data) != VERSION_SIZE or len(found) != 1 or found[0] < 0:
                log.problem = (
                    request,
                    f"one whole version of {VERSION_SIZE} bytes",
                    f"{len(data)} bytes made of versions {found[:10]}",
                )
                return
            version = found[0]
            with lock:
                expected_etag = etags.get(version)
            if got.get("ETag") != expected_etag:
                log.problem = (
                    request,
                    f"the ETag of version {version} ({expected_etag})",
                    f"ETag {got.get('ETag')} with the body of version {version}",
                )
                return
            if version < newest_seen:
                log.problem = (
                    request,
                    f"version {newest_seen} or newer (this reader already saw it)",
                    f"version {version}",
                )
                return
            newest_seen = version
            log.versions.add(version)

    logs = [_ReaderLog() for _ in range(READERS)]
    threads = [
        threading.Thread(target=reader, args=(log,), name=f"core-reader-{i}", daemon=True)
        for i, log in enumerate(logs)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + OVERWRITE_SECONDS
    writes = 0
    try:
        while time.monotonic() < deadline and not any(log.problem for log in logs):
            version = latest[0] + 1
            body = version_body(version)
            with lock:
                etags[version] = quoted_md5(body)
            ctx.put(bucket, key, body)
            latest[0] = version
            writes += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    for log in logs:
        if log.problem:
            request, expected, got = log.problem
            ctx.fail(expected, got, request)
    reads = sum(log.reads for log in logs)
    seen = set().union(*(log.versions for log in logs))
    ctx.notes.append(f"{writes} overwrites, {reads} concurrent reads, {len(seen)} versions seen")
    ctx.expect(
        writes >= 3 and reads >= 3,
        "at least 3 overwrites and 3 reads in the time allowed, to prove anything",
        f"{writes} overwrites, {reads} reads",
    )
    final, _ = ctx.get(bucket, key)
    ctx.expect(
        hashlib.sha256(final).digest() == hashlib.sha256(version_body(latest[0])).digest(),
        f"the last version written ({latest[0]}) after the writer stopped",
        f"versions {versions_in(final)[:10]}",
    )
