"""ListObjects (v1) and ListObjectsV2: prefix, delimiter, paging, order, encoding."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from silverlining.node.protocol.s3.serializer import S3Serializer, contents_xml
from tests.node.s3util import error_of

KEYS = ["a", "a/b", "a/b/c", "a/c", "b", "b/x", "c d", "z/\u00e9", "z/\u0100", "z/\U0001f600",
        "z/~", "Z"]


@pytest.fixture
def filled(s3: Any, bucket: str) -> Iterator[str]:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), KEYS))
    yield bucket


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def test_v2_full_listing_in_utf8_byte_order(s3: Any, filled: str) -> None:
    resp = s3.list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in resp["Contents"]] == utf8_sorted(KEYS)
    assert resp["KeyCount"] == len(KEYS)
    assert resp["IsTruncated"] is False
    first = resp["Contents"][0]
    assert first["Size"] == len(first["Key"].encode())
    assert first["StorageClass"] == "STANDARD"
    assert "Owner" not in first


def test_v2_prefix_delimiter(s3: Any, filled: str) -> None:
    resp = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["Z", "a", "b", "c d"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "b/", "z/"]
    assert resp["KeyCount"] == 7
    resp = s3.list_objects_v2(Bucket=filled, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a/b", "a/c"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/b/"]
    resp = s3.list_objects_v2(Bucket=filled, Prefix="nothing")
    assert resp["KeyCount"] == 0 and "Contents" not in resp


def test_v2_pagination_with_delimiter(s3: Any, filled: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kw: dict[str, Any] = {"Bucket": filled, "Delimiter": "/", "MaxKeys": 2}
        if token:
            kw["ContinuationToken"] = token
        resp = s3.list_objects_v2(**kw)
        pages += 1
        seen += [o["Key"] for o in resp.get("Contents", [])]
        seen += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        assert resp["KeyCount"] <= 2
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
    assert sorted(seen) == sorted(["Z", "a", "b", "c d", "a/", "b/", "z/"])
    assert pages == 4


def test_v2_start_after_fetch_owner_and_max_keys_zero(s3: Any, filled: str) -> None:
    resp = s3.list_objects_v2(Bucket=filled, StartAfter="b", FetchOwner=True)
    assert [o["Key"] for o in resp["Contents"]] == [k for k in utf8_sorted(KEYS) if k > "b"]
    assert resp["StartAfter"] == "b"
    assert resp["Contents"][0]["Owner"]["DisplayName"] == "tester"
    zero = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert zero["KeyCount"] == 0 and zero["IsTruncated"] is False


def test_v2_encoding_type_url(s3: Any, filled: str) -> None:
    # botocore adds encoding-type=url to every listing by itself and decodes the answer...
    resp = s3.list_objects_v2(Bucket=filled, Prefix="c")
    assert [o["Key"] for o in resp["Contents"]] == ["c d"]
    # ...but leaves it encoded when the caller asked for it explicitly.
    resp = s3.list_objects_v2(Bucket=filled, EncodingType="url", Prefix="c")
    assert [o["Key"] for o in resp["Contents"]] == ["c%20d"]
    raw: dict[str, Any] = {}

    def capture(http_response: Any, **_: Any) -> None:
        raw["body"] = http_response.content

    s3.meta.events.register("after-call.s3.ListObjectsV2", capture)
    try:
        s3.list_objects_v2(Bucket=filled, EncodingType="url", Prefix="c")
    finally:
        s3.meta.events.unregister("after-call.s3.ListObjectsV2", capture)
    assert b"<Key>c%20d</Key>" in raw["body"]
    assert error_of(s3.list_objects_v2, Bucket=filled, EncodingType="bogus") == (
        "InvalidArgument", 400)


def test_v1_marker_and_next_marker(s3: Any, filled: str) -> None:
    resp = s3.list_objects(Bucket=filled, MaxKeys=3)
    assert [o["Key"] for o in resp["Contents"]] == utf8_sorted(KEYS)[:3]
    assert resp["IsTruncated"] is True
    assert "NextMarker" not in resp  # only with a delimiter, as S3 does
    resp2 = s3.list_objects(Bucket=filled, Marker=resp["Contents"][-1]["Key"])
    assert [o["Key"] for o in resp2["Contents"]] == utf8_sorted(KEYS)[3:]
    d = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2)
    assert d["NextMarker"] == "a"
    d2 = s3.list_objects(Bucket=filled, Delimiter="/", Marker="a/", MaxKeys=10)
    assert [o["Key"] for o in d2["Contents"]] == ["b", "c d"]
    assert [p["Prefix"] for p in d2["CommonPrefixes"]] == ["b/", "z/"]
    assert d2["Contents"][0]["Owner"]["DisplayName"] == "tester"


def test_paginators_over_many_keys(s3: Any, bucket: str) -> None:
    keys = [f"many/{i:05d}" for i in range(2300)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    for op in ("list_objects_v2", "list_objects"):
        got = [o["Key"] for page in s3.get_paginator(op).paginate(Bucket=bucket, Prefix="many/")
               for o in page.get("Contents", [])]
        assert got == keys, op


def test_list_after_write_and_delete(s3: Any, bucket: str) -> None:
    for i in range(20):
        key = f"raw/{i}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="raw/")[
            "Contents"]]
        s3.delete_object(Bucket=bucket, Key=key)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="raw/").get("Contents", [])
        assert key not in [o["Key"] for o in listed]


def test_bad_continuation_token(s3: Any, bucket: str) -> None:
    assert error_of(s3.list_objects_v2, Bucket=bucket, ContinuationToken="zz!") == (
        "InvalidArgument", 400)


def test_prerendered_contents_match_the_model_renderer() -> None:
    """ListObjectsV2 renders its entries with ``contents_xml`` (one format per entry, for
    speed): the bytes must be the ones the model-driven renderer writes for the same
    entries, for keys that need escaping and characters XML cannot carry."""
    entries = [
        ("plain/key.txt", 1_700_000_000.123, '"d41d8cd98f00b204e9800998ecf8427e"', 0),
        ("a&b<c>d\"e'f", 1_700_000_001.0, '"0123456789abcdef0123456789abcdef-3"', 5 << 30),
        ("ctl\x01\x1f tab\t nl\n \ud800 \ufffe", 0.999, '"x"', 1),
        ("z/\u00e9\u0100\U0001f600~", 1_800_000_000.5, '"y"', 42),
    ]
    serializer = S3Serializer()
    common = {"IsTruncated": False, "Name": "b", "Prefix": "", "MaxKeys": 1000, "KeyCount": 4}
    model = serializer.render("ListObjectsV2", {**common, "Contents": [
        {"Key": k, "LastModified": m, "ETag": e, "Size": s, "StorageClass": "STANDARD"}
        for k, m, e, s in entries
    ]})
    fast = serializer.render("ListObjectsV2", {**common, "Contents": contents_xml(entries)})
    assert fast.body == model.body
    assert b"a&amp;b&lt;c&gt;d" in fast.body and b"&#x1;" in fast.body
    empty = serializer.render("ListObjectsV2", {**common, "Contents": contents_xml([])})
    assert empty.body == serializer.render("ListObjectsV2", {**common, "Contents": []}).body
