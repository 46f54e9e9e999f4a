"""Crash safety: the node is killed (SIGKILL) at 60 distinct points across PutObject,
CompleteMultipartUpload, UploadPart, CopyObject, DeleteObject(s), AbortMultipartUpload and
CreateBucket, then restarted. Acknowledged changes must be there, byte for byte; a change
that was not acknowledged must be entirely absent if the crash came before its metadata
commit, and entirely present (never partial) if it came after; and no disk space may leak.

The kill comes from the node itself at a named crash point (``SILVERLINING_CRASH_AT``,
see ``silverlining.node.faults``), which is what ``kill -9`` at that instant does, but
deterministic. ``test_random_kills_under_load`` adds kills from outside at random moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import NodeProcess

MiB = 1024 * 1024
KiB = 1024
B = "crashb"
#: Objects up to this size live in the metadata row (no blob file); bigger ones in blobs.
INLINE_MAX = 64 * KiB


def blob(tag: str, size: int) -> bytes:
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class Template:
    data_dir: Path
    access_key: str
    secret_key: str
    uploads: dict[str, str]
    part_etags: dict[str, list[str]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A stopped node's data dir holding the state every scenario starts from."""
    root = tmp_path_factory.mktemp("crash-template")
    node = NodeProcess(root / "data")
    ak, sk = node.new_credentials("crash")
    node.start()
    try:
        s3 = node.client(ak, sk)
        s3.create_bucket(Bucket=B)
        s3.put_object(Bucket=B, Key="existing", Body=blob("existing", 4096))
        s3.put_object(Bucket=B, Key="existing-big", Body=blob("existing-big", 100 * KiB))
        for k in ("victim", "d1", "d2", "d3"):
            s3.put_object(Bucket=B, Key=k, Body=blob(k, 100 * KiB))
        s3.put_object(Bucket=B, Key="src", Body=blob("src", 100 * KiB))
        s3.put_object(Bucket=B, Key="existing-mp", Body=blob("existing-mp", 100 * KiB))
        uploads: dict[str, str] = {}
        etags: dict[str, list[str]] = {}
        big = [blob("big1", 5 * MiB), blob("big2", 5 * MiB), blob("big3", 1024)]
        for name, key, parts in [
            ("bigobj", "bigobj", big),
            ("mpu", "existing-mp", [blob("mp1", 5 * MiB), blob("mp2", 5 * MiB),
                                    blob("mp3", 1024)]),
            ("abort", "abortme", [blob("ab1", 100), blob("ab2", 100), blob("ab3", 100)]),
            ("parts", "partsup", [blob("pu1", 100)]),
        ]:
            uid = s3.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
            uploads[name] = uid
            etags[name] = [
                s3.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=i, Body=p)["ETag"]
                for i, p in enumerate(parts, 1)
            ]
        s3.complete_multipart_upload(Bucket=B, Key="bigobj", UploadId=uploads["bigobj"],
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": i, "ETag": e}
                                         for i, e in enumerate(etags["bigobj"], 1)]})
    finally:
        node.stop()
    return Template(node.data_dir, ak, sk, uploads, etags)


# -- the operations, each with how to tell old state from new --------------------------------


@dataclass
class Op:
    name: str
    run: Callable[[Any, Template], Any]
    #: returns "new" or "old" after restart; raises AssertionError if neither (a mix)
    state: Callable[[Any, Template], str]
    points: list[str]


def _get(s3: Any, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=B, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchKey":
            return None
        raise


def _which(got: Any, old: Any, new: Any) -> str:
    if got == new:
        return "new"
    if got == old:
        return "old"
    raise AssertionError(f"neither old nor new state: {str(got)[:200]}")


def _parts(s3: Any, uid: str, key: str) -> list[int] | None:
    try:
        return [p["PartNumber"] for p in s3.list_parts(Bucket=B, Key=key, UploadId=uid)["Parts"]]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchUpload":
            return None
        raise


_BLOB_STEPS = ["blob.fsynced", "blob.renamed", "blob.dir_synced"]
_COMMIT = ["meta.before_commit", "meta.committed"]

OPS = [
    # small objects live in the metadata row: the commit is the only durable step
    Op("put-new-small",
       lambda s3, t: s3.put_object(Bucket=B, Key="fresh", Body=blob("fresh", 4096)),
       lambda s3, t: _which(_get(s3, "fresh"), None, blob("fresh", 4096)),
       _COMMIT),
    Op("put-overwrite-small",
       lambda s3, t: s3.put_object(Bucket=B, Key="existing", Body=blob("existing2", 4096)),
       lambda s3, t: _which(_get(s3, "existing"), blob("existing", 4096),
                            blob("existing2", 4096)),
       _COMMIT),
    Op("put-new-100k",
       lambda s3, t: s3.put_object(Bucket=B, Key="fresh-big", Body=blob("fb", 100 * KiB)),
       lambda s3, t: _which(_get(s3, "fresh-big"), None, blob("fb", 100 * KiB)),
       ["blob.written", *_BLOB_STEPS, *_COMMIT]),
    Op("put-overwrite-100k",
       lambda s3, t: s3.put_object(Bucket=B, Key="existing-big", Body=blob("eb2", 100 * KiB)),
       lambda s3, t: _which(_get(s3, "existing-big"), blob("existing-big", 100 * KiB),
                            blob("eb2", 100 * KiB)),
       ["blob.written", *_BLOB_STEPS, *_COMMIT, "blob.deleted"]),
    Op("put-small-over-big",
       lambda s3, t: s3.put_object(Bucket=B, Key="existing-big", Body=blob("tiny", 10)),
       lambda s3, t: _which(_get(s3, "existing-big"), blob("existing-big", 100 * KiB),
                            blob("tiny", 10)),
       [*_COMMIT, "blob.deleted"]),
    Op("put-new-large",
       lambda s3, t: s3.put_object(Bucket=B, Key="large", Body=blob("large", 3 * MiB)),
       lambda s3, t: _which(_get(s3, "large"), None, blob("large", 3 * MiB)),
       ["blob.written:1", "blob.written:2", "blob.written:3", *_BLOB_STEPS, *_COMMIT]),
    Op("put-overwrite-multipart-object",
       lambda s3, t: s3.put_object(Bucket=B, Key="bigobj", Body=blob("bigobj2", 2 * MiB)),
       lambda s3, t: _which(
           _get(s3, "bigobj"),
           blob("big1", 5 * MiB) + blob("big2", 5 * MiB) + blob("big3", 1024),
           blob("bigobj2", 2 * MiB)),
       ["blob.written:1", "blob.written:2", *_BLOB_STEPS, *_COMMIT, "blob.deleted:1",
        "blob.deleted:2", "blob.deleted:3"]),
    Op("complete-multipart",
       lambda s3, t: s3.complete_multipart_upload(
           Bucket=B, Key="existing-mp", UploadId=t.uploads["mpu"],
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": t.part_etags["mpu"][0]},
                                      {"PartNumber": 3, "ETag": t.part_etags["mpu"][2]}]}),
       lambda s3, t: _which(
           (_get(s3, "existing-mp"), _parts(s3, t.uploads["mpu"], "existing-mp")),
           (blob("existing-mp", 100 * KiB), [1, 2, 3]),
           (blob("mp1", 5 * MiB) + blob("mp3", 1024), None)),
       [*_COMMIT, "blob.deleted:1", "blob.deleted:2"]),
    Op("upload-part",
       lambda s3, t: s3.upload_part(Bucket=B, Key="partsup", UploadId=t.uploads["parts"],
                                    PartNumber=2, Body=blob("pu2", 1000)),
       lambda s3, t: _which(_parts(s3, t.uploads["parts"], "partsup"), [1], [1, 2]),
       ["blob.written", *_BLOB_STEPS, *_COMMIT]),
    Op("copy-new",
       lambda s3, t: s3.copy_object(Bucket=B, Key="copied", CopySource=f"{B}/src"),
       lambda s3, t: _which(_get(s3, "copied"), None, blob("src", 100 * KiB)),
       ["blob.linked", *_COMMIT]),
    Op("copy-overwrite",
       lambda s3, t: s3.copy_object(Bucket=B, Key="existing-big", CopySource=f"{B}/src"),
       lambda s3, t: _which(_get(s3, "existing-big"), blob("existing-big", 100 * KiB),
                            blob("src", 100 * KiB)),
       ["blob.linked", *_COMMIT, "blob.deleted"]),
    Op("copy-small",
       lambda s3, t: s3.copy_object(Bucket=B, Key="copied-small", CopySource=f"{B}/existing"),
       lambda s3, t: _which(_get(s3, "copied-small"), None, blob("existing", 4096)),
       _COMMIT),
    Op("delete",
       lambda s3, t: s3.delete_object(Bucket=B, Key="victim"),
       lambda s3, t: _which(_get(s3, "victim"), blob("victim", 100 * KiB), None),
       [*_COMMIT, "blob.deleted"]),
    Op("delete-small",
       lambda s3, t: s3.delete_object(Bucket=B, Key="existing"),
       lambda s3, t: _which(_get(s3, "existing"), blob("existing", 4096), None),
       _COMMIT),
    Op("delete-objects",
       lambda s3, t: s3.delete_objects(Bucket=B, Delete={"Objects": [
           {"Key": "d1"}, {"Key": "d2"}, {"Key": "d3"}]}),
       lambda s3, t: _which([_get(s3, k) for k in ("d1", "d2", "d3")],
                            [blob(k, 100 * KiB) for k in ("d1", "d2", "d3")], [None] * 3),
       [*_COMMIT, "blob.deleted:1", "blob.deleted:2", "blob.deleted:3"]),
    Op("abort-multipart",
       lambda s3, t: s3.abort_multipart_upload(Bucket=B, Key="abortme",
                                               UploadId=t.uploads["abort"]),
       lambda s3, t: _which(_parts(s3, t.uploads["abort"], "abortme"), [1, 2, 3], None),
       [*_COMMIT, "blob.deleted:1", "blob.deleted:2", "blob.deleted:3"]),
    Op("create-bucket",
       lambda s3, t: s3.create_bucket(Bucket="newbucket"),
       lambda s3, t: "new" if "newbucket" in [
           b["Name"] for b in s3.list_buckets()["Buckets"]] else "old",
       _COMMIT),
]

SCENARIOS = [(op, point) for op in OPS for point in op.points]
_AFTER_COMMIT = ("meta.committed", "blob.deleted")


def test_at_least_fifty_kill_points() -> None:
    assert len(SCENARIOS) >= 50


def _disk_accounting(data_dir: Path, s3: Any, template: Template) -> None:
    """Bytes in blob files == bytes of every object stored as blobs (bigger than
    INLINE_MAX) + every pending part: nothing leaked."""
    on_disk = sum(p.stat().st_size for p in (data_dir / "blobs").rglob("*") if p.is_file())
    assert list((data_dir / "tmp").iterdir()) == []
    logical = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B):
        logical += sum(o["Size"] for o in page.get("Contents", []) if o["Size"] > INLINE_MAX)
    for up in s3.list_multipart_uploads(Bucket=B).get("Uploads", []):
        parts = s3.list_parts(Bucket=B, Key=up["Key"], UploadId=up["UploadId"])["Parts"]
        logical += sum(p["Size"] for p in parts)
    assert on_disk == logical


@pytest.mark.parametrize(("op", "point"), SCENARIOS,
                         ids=[f"{op.name}@{point}" for op, point in SCENARIOS])
def test_kill_at_point(tmp_path: Path, template: Template, op: Op, point: str) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(template.data_dir, data_dir)
    node = NodeProcess(data_dir, env={"SILVERLINING_CRASH_AT": point})
    node.start()
    try:
        s3 = node.client(template.access_key, template.secret_key, read_timeout=20,
                         connect_timeout=5)
        acknowledged = True
        try:
            op.run(s3, template)
        except (BotoCoreError, ClientError):
            acknowledged = False
        assert node.proc is not None
        code = node.proc.wait(timeout=20)
        assert code == -9, f"the node was not killed at {point} (exit {code})"
        node.proc = None
    finally:
        node.stop()
    restarted = NodeProcess(data_dir)
    restarted.start()
    try:
        s3 = restarted.client(template.access_key, template.secret_key)
        state = op.state(s3, template)
        committed = point.split(":", maxsplit=1)[0] in _AFTER_COMMIT
        if acknowledged or committed:
            assert state == "new", f"{op.name}: a committed change was lost at {point}"
        else:
            assert state == "old", f"{op.name}: an uncommitted change is visible at {point}"
        _disk_accounting(data_dir, s3, template)
        # and the node still works normally on this data
        s3.put_object(Bucket=B, Key="after-restart", Body=b"ok")
        assert _get(s3, "after-restart") == b"ok"
    finally:
        restarted.stop()


def test_random_kills_under_load(tmp_path: Path, template: Template) -> None:
    """kill -9 from outside at random moments while writers run; every acknowledged write
    and delete survives each restart, and nothing leaks."""
    data_dir = tmp_path / "data"
    shutil.copytree(template.data_dir, data_dir)
    rng = random.Random(1234)
    expected: dict[str, bytes | None] = {}
    lock = threading.Lock()
    rounds = int(os.environ.get("SL_CRASH_ROUNDS", "6"))
    for round_no in range(rounds):
        node = NodeProcess(data_dir)
        node.start()
        s3 = node.client(template.access_key, template.secret_key, read_timeout=10,
                         connect_timeout=2)
        stop = threading.Event()

        def writer(wid: int, s3: Any = s3, stop: threading.Event = stop,
                   round_no: int = round_no) -> None:
            i = 0
            while not stop.is_set():
                key = f"w{wid}/k{i % 7}"
                body = blob(f"{round_no}-{wid}-{i}", 1000 + (i * 997) % 300_000)
                try:
                    if i % 5 == 4:
                        s3.delete_object(Bucket=B, Key=key)
                        with lock:
                            expected[key] = None
                    else:
                        s3.put_object(Bucket=B, Key=key, Body=body)
                        with lock:
                            expected[key] = body
                except (BotoCoreError, ClientError):
                    with lock:  # unacknowledged: either outcome is allowed
                        expected.pop(key, None)
                    return
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        node.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=30)
    node = NodeProcess(data_dir)
    node.start()
    try:
        s3 = node.client(template.access_key, template.secret_key)
        for key, body in expected.items():
            assert _get(s3, key) == body, key
        _disk_accounting(data_dir, s3, template)
    finally:
        node.stop()
    assert json.dumps(len(expected))  # at least the keys were tracked
    assert expected, "no acknowledged writes happened"
