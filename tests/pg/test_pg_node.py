"""Silver Lining nodes on PostgreSQL: operator commands, byte order under a natural-language
collation, quotas, and the scale-out shape (several node processes sharing one PostgreSQL
database and one data directory, serving the same buckets)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.node.s3util import error_of
from tests.pg.conftest import PgNode, pg_cli

MakeNode = Callable[..., PgNode]
MiB = 1024 * 1024

UNICODE_KEYS = ["a", "a/b", "a/c", "b", "Z", "z/\u00e9", "z/\u0100", "z/\U0001f600", "z/~",
                "\u00e9t\u00e9", "E", "e", "~", "0", "A b"]


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_schema_declares_byte_order_collation(make_node: MakeNode, pg_url: str) -> None:
    make_node(pg_url)
    with psycopg.connect(_libpq(pg_url)) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE (table_name, column_name) IN (('objects', 'key'), ('objects', 'bucket'), "
            "('buckets', 'name'), ('uploads', 'key'))").fetchall()
        datcollate = conn.execute("SELECT daticulocale FROM pg_database "
                                  "WHERE datname = current_database()").fetchone()
    assert sorted(rows) == [("buckets", "name", "C"), ("objects", "bucket", "C"),
                            ("objects", "key", "C"), ("uploads", "key", "C")]
    assert datcollate == ("en-US",)  # the database's own order is not byte order


def test_operator_commands_use_the_database_url(make_node: MakeNode, pg_url: str,
                                                tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pg_cli("accounts", "create", "alice", data_dir=data_dir, url=pg_url)
    key = pg_cli("keys", "create", "alice", data_dir=data_dir, url=pg_url)
    assert not (data_dir / "meta.db").exists()  # nothing went to SQLite
    node = make_node(pg_url, data_dir)
    s3 = node.client(key["access_key_id"], key["secret_access_key"])
    s3.create_bucket(Bucket="alice-bucket")
    s3.put_object(Bucket="alice-bucket", Key="k", Body=b"12345")
    [row] = [a for a in pg_cli("accounts", "list", data_dir=data_dir, url=pg_url)
             if a["name"] == "alice"]
    assert (row["bytes_used"], row["objects_used"]) == (5, 1)
    keys = pg_cli("keys", "list", "alice", data_dir=data_dir, url=pg_url)
    assert [k["status"] for k in keys] == ["active"]
    # Revocation through the shared database is seen by the running node at once.
    pg_cli("keys", "revoke", key["access_key_id"], data_dir=data_dir, url=pg_url)
    assert error_of(s3.list_buckets)[0] == "InvalidAccessKeyId"
    # Without the URL the command looks for SQLite data and finds none.
    out = pg_cli("accounts", "list", data_dir=data_dir, url="", check=False)
    assert out.returncode != 0 and "no node data" in out.stderr


def test_unsupported_database_is_refused_clearly(tmp_path: Path) -> None:
    out = pg_cli("accounts", "list", data_dir=tmp_path, url="mysql://u@localhost/x",
                 check=False)
    assert out.returncode != 0
    assert "unsupported metadata database 'mysql'" in out.stderr


def test_crud_metadata_tags_copy_and_listing_in_byte_order(make_node: MakeNode,
                                                           pg_url: str) -> None:
    node = make_node(pg_url)
    s3 = node.client(*node.new_credentials("crud"))
    s3.create_bucket(Bucket="crud")
    assert error_of(lambda: s3.create_bucket(Bucket="crud"))[0] == "BucketAlreadyOwnedByYou"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket="crud", Key=k, Body=k.encode(),
                                              Metadata={"k": "v\u00e9".encode().hex()},
                                              ContentType="text/x-test"), UNICODE_KEYS))
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="crud")["Contents"]]
    assert listed == utf8_sorted(UNICODE_KEYS)
    # Pagination walks the same order, one key per page.
    paged: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crud",
                                                            PaginationConfig={"PageSize": 1}):
        paged += [o["Key"] for o in page.get("Contents", [])]
    assert paged == listed
    resp = s3.list_objects_v2(Bucket="crud", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == utf8_sorted(
        [k for k in UNICODE_KEYS if "/" not in k])
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "z/"]
    resp = s3.list_objects_v2(Bucket="crud", Prefix="z/", StartAfter="z/\u00e9")
    assert [o["Key"] for o in resp["Contents"]] == ["z/\u0100", "z/\U0001f600"]
    v1 = s3.list_objects(Bucket="crud", Marker="Z", MaxKeys=3)
    assert [o["Key"] for o in v1["Contents"]] == [k for k in listed if k > "Z"][:3]

    head = s3.head_object(Bucket="crud", Key="\u00e9t\u00e9")
    assert head["ContentType"] == "text/x-test"
    assert head["Metadata"] == {"k": "v\u00e9".encode().hex()}
    s3.put_object_tagging(Bucket="crud", Key="a", Tagging={"TagSet": [
        {"Key": "colour", "Value": "bl\u00fc"}, {"Key": "n", "Value": "1"}]})
    tags = s3.get_object_tagging(Bucket="crud", Key="a")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("colour", "bl\u00fc"), ("n", "1")]

    big = bytes(range(256)) * 1024  # a blob file, not an inline row
    s3.put_object(Bucket="crud", Key="big", Body=big)
    s3.copy_object(Bucket="crud", Key="big-copy", CopySource={"Bucket": "crud", "Key": "big"})
    s3.copy_object(Bucket="crud", Key="small-copy", CopySource={"Bucket": "crud", "Key": "a"},
                   MetadataDirective="REPLACE", Metadata={"new": "1"})
    assert s3.get_object(Bucket="crud", Key="big-copy")["Body"].read() == big
    copied = s3.get_object(Bucket="crud", Key="small-copy")
    assert copied["Body"].read() == b"a" and copied["Metadata"] == {"new": "1"}

    # Overwrite: read-after-write sees the new bytes at once, old ones never come back.
    for i in range(5):
        s3.put_object(Bucket="crud", Key="a", Body=f"v{i}".encode())
        assert s3.get_object(Bucket="crud", Key="a")["Body"].read() == f"v{i}".encode()

    keys = [*UNICODE_KEYS, "big", "big-copy", "small-copy", "missing"]
    out = s3.delete_objects(Bucket="crud", Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in out["Deleted"]) == sorted(keys)
    assert "Contents" not in s3.list_objects_v2(Bucket="crud")
    s3.delete_bucket(Bucket="crud")
    assert error_of(lambda: s3.head_bucket(Bucket="crud"))[1] == 404


def test_multipart_upload(make_node: MakeNode, pg_url: str) -> None:
    node = make_node(pg_url)
    s3 = node.client(*node.new_credentials("mp"))
    s3.create_bucket(Bucket="mp-bucket")
    up = s3.create_multipart_upload(Bucket="mp-bucket", Key="\u00fcber/obj", Metadata={"m": "1"},
                                    Tagging="t=1")
    parts = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail"]
    etags = [s3.upload_part(Bucket="mp-bucket", Key="\u00fcber/obj", UploadId=up["UploadId"],
                            PartNumber=i + 1, Body=p)["ETag"] for i, p in enumerate(parts)]
    listed = s3.list_parts(Bucket="mp-bucket", Key="\u00fcber/obj", UploadId=up["UploadId"])
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    uploads = s3.list_multipart_uploads(Bucket="mp-bucket")["Uploads"]
    assert [u["Key"] for u in uploads] == ["\u00fcber/obj"]
    s3.complete_multipart_upload(
        Bucket="mp-bucket", Key="\u00fcber/obj", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                   for i, e in enumerate(etags)]})
    got = s3.get_object(Bucket="mp-bucket", Key="\u00fcber/obj")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"].endswith('-3"') and got["Metadata"] == {"m": "1"}
    assert s3.get_object_tagging(Bucket="mp-bucket", Key="\u00fcber/obj")["TagSet"] == [
        {"Key": "t", "Value": "1"}]
    assert s3.list_multipart_uploads(Bucket="mp-bucket").get("Uploads", []) == []
    aborted = s3.create_multipart_upload(Bucket="mp-bucket", Key="gone")
    s3.upload_part(Bucket="mp-bucket", Key="gone", UploadId=aborted["UploadId"], PartNumber=1,
                   Body=b"x")
    s3.abort_multipart_upload(Bucket="mp-bucket", Key="gone", UploadId=aborted["UploadId"])
    assert error_of(lambda: s3.list_parts(Bucket="mp-bucket", Key="gone",
                                          UploadId=aborted["UploadId"]))[0] == "NoSuchUpload"


def test_quotas(make_node: MakeNode, pg_url: str) -> None:
    node = make_node(pg_url)
    s3 = node.client(*node.new_credentials("quota"))
    pg_cli("accounts", "set-quota", "quota", "--max-bytes", "1000", "--max-objects", "3",
           data_dir=node.data_dir, url=pg_url)
    s3.create_bucket(Bucket="quota")
    s3.put_object(Bucket="quota", Key="a", Body=b"x" * 600)
    assert error_of(lambda: s3.put_object(Bucket="quota", Key="b", Body=b"x" * 500))[0] == (
        "QuotaExceeded")
    s3.put_object(Bucket="quota", Key="a", Body=b"x" * 900)  # an overwrite counts the change
    s3.put_object(Bucket="quota", Key="b", Body=b"x" * 50)
    s3.put_object(Bucket="quota", Key="c", Body=b"")
    assert error_of(lambda: s3.put_object(Bucket="quota", Key="d", Body=b""))[0] == (
        "QuotaExceeded")
    [row] = [a for a in pg_cli("accounts", "list", data_dir=node.data_dir, url=pg_url)
             if a["name"] == "quota"]
    assert (row["bytes_used"], row["objects_used"]) == (950, 3)


# --- scale-out: several processes, one database, one data directory ------------------------


def _start_together(make_node: MakeNode, url: str, data_dir: Path, count: int,
                    extra_args: tuple[str, ...] = ()) -> list[PgNode]:
    """Start ``count`` nodes on one data dir and database at the same moment (the schema and
    the admin account are created once, whoever comes first)."""
    nodes: list[PgNode] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start() -> None:
        try:
            n = make_node(url, data_dir, extra_args=extra_args)
            with lock:
                nodes.append(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return nodes


def test_two_nodes_share_database_and_data_dir(make_node: MakeNode, pg_url: str,
                                               tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    a, b = _start_together(make_node, pg_url, data_dir, 2)
    creds = a.new_credentials("shared")
    sa, sb = a.client(*creds), b.client(*creds)
    sa.create_bucket(Bucket="shared")
    assert [x["Name"] for x in sb.list_buckets()["Buckets"]] == ["shared"]

    big = hashlib.sha256(b"seed").digest() * 8192  # 256 KiB: a blob file
    sa.put_object(Bucket="shared", Key="small", Body=b"inline", Metadata={"from": "a"})
    sa.put_object(Bucket="shared", Key="big", Body=big)
    got = sb.get_object(Bucket="shared", Key="small")
    assert got["Body"].read() == b"inline" and got["Metadata"] == {"from": "a"}
    assert sb.get_object(Bucket="shared", Key="big")["Body"].read() == big
    assert sb.get_object(Bucket="shared", Key="big", Range="bytes=10-19")["Body"].read() == (
        big[10:20])
    # Read-after-write across processes, overwrite after overwrite.
    for i in range(10):
        writer, reader = (sa, sb) if i % 2 else (sb, sa)
        writer.put_object(Bucket="shared", Key="flip", Body=f"v{i}".encode())
        assert reader.get_object(Bucket="shared", Key="flip")["Body"].read() == f"v{i}".encode()
    sb.put_object_tagging(Bucket="shared", Key="big",
                          Tagging={"TagSet": [{"Key": "via", "Value": "b"}]})
    assert sa.get_object_tagging(Bucket="shared", Key="big")["TagSet"] == [
        {"Key": "via", "Value": "b"}]
    sb.copy_object(Bucket="shared", Key="big-copy", CopySource={"Bucket": "shared", "Key": "big"})
    assert sa.get_object(Bucket="shared", Key="big-copy")["Body"].read() == big

    # A multipart upload whose parts go through both processes, completed through one.
    up = sa.create_multipart_upload(Bucket="shared", Key="mp")
    parts = [b"1" * (5 * MiB), b"2" * (5 * MiB), b"3"]
    etags = [(sa if i % 2 else sb).upload_part(Bucket="shared", Key="mp",
                                               UploadId=up["UploadId"], PartNumber=i + 1,
                                               Body=p)["ETag"] for i, p in enumerate(parts)]
    assert len(sb.list_parts(Bucket="shared", Key="mp", UploadId=up["UploadId"])["Parts"]) == 3
    sb.complete_multipart_upload(Bucket="shared", Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                                            for i, e in enumerate(etags)]})
    assert sa.get_object(Bucket="shared", Key="mp")["Body"].read() == b"".join(parts)

    sb.delete_object(Bucket="shared", Key="small")
    assert error_of(lambda: sa.get_object(Bucket="shared", Key="small"))[0] == "NoSuchKey"
    assert [o["Key"] for o in sa.list_objects_v2(Bucket="shared")["Contents"]] == [
        "big", "big-copy", "flip", "mp"]
    # A third process joining later sweeps nothing the others still use.
    c = make_node(pg_url, data_dir)
    sc = c.client(*creds)
    for key, body in (("big", big), ("big-copy", big), ("mp", b"".join(parts))):
        assert sc.get_object(Bucket="shared", Key=key)["Body"].read() == body


def test_concurrent_writes_through_two_nodes_are_counted_exactly(
        make_node: MakeNode, pg_url: str, tmp_path: Path) -> None:
    a, b = _start_together(make_node, pg_url, tmp_path / "shared", 2)
    creds = a.new_credentials("racer")
    clients = [a.client(*creds, max_pool_connections=32),
               b.client(*creds, max_pool_connections=32)]
    clients[0].create_bucket(Bucket="race")
    clients[0].create_bucket(Bucket="race2")  # same owner, another bucket

    def work(i: int) -> None:
        s3 = clients[i % 2]
        bucket = "race" if i % 3 else "race2"
        # Many writers on a few keys (overwrites and first inserts race) and on keys of
        # their own; sizes differ so a miscounted overwrite shows in bytes_used.
        s3.put_object(Bucket=bucket, Key=f"hot-{i % 4}", Body=b"x" * (i % 97 + 1))
        s3.put_object(Bucket=bucket, Key=f"own-{i}", Body=b"y" * 100)
        s3.put_object(Bucket=bucket, Key=f"hot-{i % 4}", Body=b"z" * (i % 13))
        if i % 5 == 0:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"own-{i}"},
                                                                 {"Key": f"hot-{i % 4}"}]})

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(work, range(400)))
    stored: dict[str, int] = {}
    for bucket in ("race", "race2"):
        for page in clients[1].get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                stored[f"{bucket}/{o['Key']}"] = o["Size"]
    assert len(stored) - sum(k.split("/")[1].startswith("hot-") for k in stored) == 400 - 80
    [row] = [x for x in pg_cli("accounts", "list", data_dir=a.data_dir, url=pg_url)
             if x["name"] == "racer"]
    assert (row["objects_used"], row["bytes_used"]) == (len(stored), sum(stored.values()))


def test_metering_across_two_nodes_is_exact(make_node: MakeNode, pg_url: str,
                                            tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    a, b = _start_together(make_node, pg_url, data_dir, 2,
                           extra_args=("--metering-period", "1"))
    creds = a.new_credentials("metered")
    sa, sb = a.client(*creds), b.client(*creds)
    sa.create_bucket(Bucket="metered")  # 1 write
    body = b"m" * 1000
    for i in range(20):  # 20 writes, 20 000 bytes in
        (sa if i % 2 else sb).put_object(Bucket="metered", Key=f"k{i}", Body=body)
    for i in range(15):  # 15 reads, 15 000 bytes out
        assert (sb if i % 2 else sa).get_object(Bucket="metered",
                                                 Key=f"k{i}")["Body"].read() == body
    a.stop()
    b.stop()
    time.sleep(1.5)  # let the last period close (1 s periods, 250 ms grace)
    usage = pg_cli("usage", "show", "metered", data_dir=data_dir, url=pg_url)
    records = usage["records"]
    total = {f: sum(int(r[f]) for r in records)
             for f in ("requests_read", "requests_write", "bytes_in", "bytes_out")}
    assert total == {"requests_read": 15, "requests_write": 21, "bytes_in": 20_000,
                     "bytes_out": 15_000}
    closed = [r for r in records if r["closed"]]
    assert closed and closed[-1]["stored_bytes_end"] == "20000"
    # Stored byte-time: 20 000 bytes at most, over the closed periods.
    assert 0 < sum(int(r["stored_byte_ms"]) for r in closed) <= 20_000 * 1000 * len(closed)


def test_bucket_names_are_global_across_nodes(make_node: MakeNode, pg_url: str,
                                              tmp_path: Path) -> None:
    name = "dup-bucket"
    a, b = _start_together(make_node, pg_url, tmp_path / "shared", 2)
    one = a.client(*a.new_credentials("one"))
    two = b.client(*b.new_credentials("two"))
    one.create_bucket(Bucket=name)
    assert error_of(lambda: two.create_bucket(Bucket=name))[0] == "BucketAlreadyExists"
    assert error_of(lambda: two.put_object(Bucket=name, Key="k", Body=b""))[0] == "AccessDenied"


def test_a_joining_node_sweeps_nothing_a_live_peer_may_still_use(
        make_node: MakeNode, pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    a = make_node(pg_url, data_dir)
    # What a live peer has in flight: a temp file being written, a blob renamed into place
    # whose metadata row is not committed yet (both a little old, as on a slow request).
    temp = data_dir / "tmp" / "upload-in-progress"
    temp.write_bytes(b"partial")
    blob = data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 28)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"about to be committed")
    for path in (temp, blob):
        os.utime(path, (time.time() - 60, time.time() - 60))
    b = make_node(pg_url, data_dir)
    assert temp.exists() and blob.exists()
    # Once nobody else uses the directory, a starting node sweeps them (crash leftovers).
    a.stop()
    b.stop()
    make_node(pg_url, data_dir)
    assert not temp.exists() and not blob.exists()


def test_a_url_without_driver_uses_psycopg(pg_url: str, tmp_path: Path) -> None:
    plain = _libpq(pg_url)  # postgresql://user@host:port/db, as libpq tools spell it
    assert plain.startswith("postgresql://")
    pg_cli("accounts", "create", "plain", data_dir=tmp_path / "d", url=plain)
    names = [a["name"] for a in pg_cli("accounts", "list", data_dir=tmp_path / "d", url=pg_url)]
    assert "plain" in names
