"""64 concurrent clients mixing PUT, GET, LIST and DELETE on overlapping keys: no 5xx, no
lost acknowledged write, read-after-write and list-after-write hold, and no reader ever
sees a torn object. ``SL_SOAK_SECONDS`` sets the duration (default 15 in the test suite;
the issue's 60-second run is ``SL_SOAK_SECONDS=60``)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter

from botocore.exceptions import ClientError

from tests.conftest import REPO, RunningNode

CLIENTS = 64
SECONDS = float(os.environ.get("SL_SOAK_SECONDS", "15"))
SHARED = [f"shared/{i}" for i in range(24)]


def make_body(tag: str, rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.choice([0, 1, 100, 4096, 70_000, 300_000]))
    return hashlib.sha256(tag.encode() + payload).hexdigest().encode() + b"|" + \
        tag.encode() + b"|" + payload


def intact(body: bytes) -> bool:
    digest, _, rest = body.partition(b"|")
    tag, _, payload = rest.partition(b"|")
    return hashlib.sha256(tag + payload).hexdigest().encode() == digest


def test_concurrent_mixed_workload(node: RunningNode, bucket: str) -> None:
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    counts: Counter[str] = Counter()
    models: dict[int, dict[str, bytes | None]] = {}
    lock = threading.Lock()

    def fail(msg: str) -> None:
        with lock:
            failures.append(msg)

    def worker(wid: int) -> None:
        rng = random.Random(wid)
        s3 = node.client(node.access_key, node.secret_key, max_pool_connections=2)
        mine: dict[str, bytes | None] = {}
        models[wid] = mine
        seq = 0
        while time.monotonic() < deadline and not failures:
            seq += 1
            private = rng.random() < 0.5
            key = f"w{wid}/{rng.randrange(6)}" if private else rng.choice(SHARED)
            op = rng.choices(["put", "get", "list", "delete"], [35, 30, 20, 15])[0]
            try:
                if op == "put":
                    body = make_body(f"{wid}-{seq}", rng)
                    s3.put_object(Bucket=bucket, Key=key, Body=body)
                    if private:
                        mine[key] = body
                        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                        if got != body:
                            fail(f"read-after-write broken for {key}")
                        listed = {o["Key"] for o in s3.list_objects_v2(
                            Bucket=bucket, Prefix=f"w{wid}/").get("Contents", [])}
                        if key not in listed:
                            fail(f"list-after-write broken for {key}")
                elif op == "get":
                    try:
                        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    except ClientError as exc:
                        if exc.response["Error"]["Code"] != "NoSuchKey":
                            raise
                        if private and mine.get(key) is not None:
                            fail(f"acknowledged write of {key} lost")
                    else:
                        if not intact(got):
                            fail(f"torn or corrupt read of {key}")
                        if private and got != mine.get(key):
                            fail(f"stale read of {key}")
                elif op == "list":
                    prefix = f"w{wid}/" if private else "shared/"
                    listed = {o["Key"] for o in s3.list_objects_v2(
                        Bucket=bucket, Prefix=prefix).get("Contents", [])}
                    if private:
                        expected = {k for k, v in mine.items() if v is not None}
                        if listed != expected:
                            fail(f"listing of {prefix} is {sorted(listed)}, not "
                                 f"{sorted(expected)}")
                else:
                    s3.delete_object(Bucket=bucket, Key=key)
                    if private:
                        mine[key] = None
                        listed = {o["Key"] for o in s3.list_objects_v2(
                            Bucket=bucket, Prefix=f"w{wid}/").get("Contents", [])}
                        if key in listed:
                            fail(f"deleted {key} still listed")
                with lock:
                    counts[op] += 1
            except ClientError as exc:
                fail(f"{op} {key}: {exc.response['ResponseMetadata']['HTTPStatusCode']} "
                     f"{exc.response['Error']['Code']}")
            except Exception as exc:
                fail(f"{op} {key}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)
    elapsed = time.monotonic() - started
    assert not failures, failures[:10]
    # every acknowledged private write survives, exactly
    s3 = node.client(node.access_key, node.secret_key)
    for mine in models.values():
        for key, body in mine.items():
            if body is None:
                continue
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    total = sum(counts.values())
    assert total > CLIENTS * 5
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "concurrency.json").write_text(json.dumps(
        {"clients": CLIENTS, "seconds": elapsed, "ops": dict(counts),
         "ops_per_second": total / elapsed}, indent=2))
