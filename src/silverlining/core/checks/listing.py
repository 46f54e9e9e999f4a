"""Listing: order, prefixes, delimiters and pagination, the way sync tools walk a bucket."""

from __future__ import annotations

from typing import Any

from silverlining.core.context import CheckContext, S3Client, quoted_md5
from silverlining.core.registry import Level, check

#: Keys whose UTF-8 byte order differs from naive or case-insensitive orders.
ORDER_KEYS = (
    "a", "B", "b", "a/b", "a-b", "a.b", "aa", "Z", "_", "~", "0", "9",
    "\u00e9", "z", "\u00f1", "\u65e5\u672c", "A", "a b",
)  # fmt: skip

TREE_KEYS = (
    "docs/readme.md",
    "photos/2024/a.jpg",
    "photos/2024/b.jpg",
    "photos/2025/c.jpg",
    "photos/2025/sub/d.jpg",
    "photosX",
    "root.txt",
)


def utf8_sorted(keys: Any) -> list[str]:
    return sorted(keys, key=lambda k: str(k).encode("utf-8"))


def list_all(client: S3Client, bucket: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a ListObjectsV2 walk (at most 100 pages)."""
    pages: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(100):
        extra = {"ContinuationToken": token} if token else {}
        page: dict[str, Any] = client.list_objects_v2(Bucket=bucket, **params, **extra)
        pages.append(page)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated"):
            break
    return pages


def keys_of(page: dict[str, Any]) -> list[str]:
    return [item["Key"] for item in page.get("Contents", [])]


def prefixes_of(page: dict[str, Any]) -> list[str]:
    return [item["Prefix"] for item in page.get("CommonPrefixes", [])]


@check(
    "s3.list.order",
    Level.S3_BASIC,
    "ListObjectsV2 returns every key once, in UTF-8 binary order, with its size and ETag.",
)
def order(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    bodies = {key: f"body of {key}".encode() * (i + 1) for i, key in enumerate(ORDER_KEYS)}
    ctx.put_many(bucket, bodies)
    page = ctx.s3.list_objects_v2(Bucket=bucket)
    ctx.expect_equal(keys_of(page), utf8_sorted(ORDER_KEYS), "the keys, in order")
    ctx.expect_equal(page.get("KeyCount"), len(ORDER_KEYS), "KeyCount")
    ctx.expect_equal(page.get("IsTruncated"), False, "IsTruncated")
    for item in page.get("Contents", []):
        body = bodies[item["Key"]]
        ctx.expect_equal(item.get("Size"), len(body), f"the Size of {item['Key']!r}")
        ctx.expect_equal(item.get("ETag"), quoted_md5(body), f"the ETag of {item['Key']!r}")


@check(
    "s3.list.prefix",
    Level.S3_BASIC,
    "ListObjectsV2 with a prefix returns exactly the keys that start with it.",
)
def prefix(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {key: b"x" for key in TREE_KEYS})
    for wanted in ("photos/2024/", "photos", "photos/2025/sub/", "docs/readme.md", "nothing/"):
        page = ctx.s3.list_objects_v2(Bucket=bucket, Prefix=wanted)
        expected = [k for k in utf8_sorted(TREE_KEYS) if k.startswith(wanted)]
        ctx.expect_equal(keys_of(page), expected, f"the keys under prefix {wanted!r}")
        ctx.expect_equal(page.get("KeyCount"), len(expected), f"KeyCount for {wanted!r}")


@check(
    "s3.list.delimiter",
    Level.S3_BASIC,
    "ListObjectsV2 with delimiter '/' rolls keys up into CommonPrefixes, like directories.",
)
def delimiter(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {key: b"x" for key in TREE_KEYS})
    cases = [
        ("", ["photosX", "root.txt"], ["docs/", "photos/"]),
        ("photos/", [], ["photos/2024/", "photos/2025/"]),
        ("photos/2025/", ["photos/2025/c.jpg"], ["photos/2025/sub/"]),
    ]
    for wanted, keys, prefixes in cases:
        page = ctx.s3.list_objects_v2(Bucket=bucket, Prefix=wanted, Delimiter="/")
        ctx.expect_equal(keys_of(page), keys, f"Contents for prefix {wanted!r}, delimiter '/'")
        ctx.expect_equal(
            prefixes_of(page), prefixes, f"CommonPrefixes for prefix {wanted!r}, delimiter '/'"
        )


PAGED_KEYS = tuple(f"key-{i:03d}" for i in range(23))


@check(
    "s3.list.pagination",
    Level.S3_BASIC,
    "ListObjectsV2 with MaxKeys pages through continuation tokens, every key exactly once, "
    "in order.",
)
def pagination(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {key: b"p" for key in PAGED_KEYS})
    pages = list_all(ctx.s3, bucket, MaxKeys=5)
    sizes = [len(keys_of(p)) for p in pages]
    ctx.expect_equal(sizes, [5, 5, 5, 5, 3], "the number of keys on each page")
    truncated = [bool(p.get("IsTruncated")) for p in pages]
    ctx.expect_equal(truncated, [True, True, True, True, False], "IsTruncated on each page")
    walked = [k for p in pages for k in keys_of(p)]
    ctx.expect_equal(walked, list(PAGED_KEYS), "the keys of all pages, in order")
    ctx.expect(
        all(p.get("NextContinuationToken") for p in pages[:-1]),
        "a NextContinuationToken on every truncated page",
        repr([p.get("NextContinuationToken") for p in pages]),
    )


@check(
    "s3.list.start-after",
    Level.S3_FULL,
    "ListObjectsV2 with StartAfter lists only the keys after it, and pages on from there.",
)
def start_after(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {key: b"s" for key in PAGED_KEYS})
    for after in ("key-010", "key-0105", "a", "zzz"):
        pages = list_all(ctx.s3, bucket, StartAfter=after, MaxKeys=4)
        walked = [k for p in pages for k in keys_of(p)]
        expected = [k for k in PAGED_KEYS if k > after]
        ctx.expect_equal(walked, expected, f"the keys listed after {after!r}")


@check(
    "s3.list.delimiter-pagination",
    Level.S3_FULL,
    "With a delimiter, MaxKeys counts keys and CommonPrefixes together and pagination "
    "returns each prefix once.",
)
def delimiter_pagination(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    keys = ["a/1", "a/2", "a/3", "b/1", "c", "d/1", "d/2", "e", "f/1"]
    ctx.put_many(bucket, {key: b"d" for key in keys})
    pages = list_all(ctx.s3, bucket, Delimiter="/", MaxKeys=2)
    entries = [sorted(keys_of(p) + prefixes_of(p)) for p in pages]
    ctx.expect_equal(
        entries,
        [["a/", "b/"], ["c", "d/"], ["e", "f/"]],
        "the keys and prefixes of each page",
    )


@check(
    "s3.list.v1-marker",
    Level.S3_FULL,
    "ListObjects (version 1) pages with Marker/NextMarker, every key once, in order.",
)
def v1_marker(ctx: CheckContext) -> None:
    bucket = ctx.new_bucket()
    ctx.put_many(bucket, {key: b"m" for key in PAGED_KEYS})
    walked: list[str] = []
    marker = ""
    for _ in range(20):
        page = ctx.s3.list_objects(Bucket=bucket, Marker=marker, MaxKeys=6)
        keys = keys_of(page)
        walked.extend(keys)
        if not page.get("IsTruncated"):
            break
        # NextMarker is only sent with a delimiter; otherwise the last key is the marker.
        marker = page.get("NextMarker") or (keys[-1] if keys else "")
        ctx.expect(bool(marker), "a truncated page to name where to go on", "an empty page")
    ctx.expect_equal(walked, list(PAGED_KEYS), "the keys of all version-1 pages")
    page = ctx.s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=3)
    ctx.expect_equal(page.get("NextMarker"), PAGED_KEYS[2], "NextMarker with a delimiter")
