"""Exact metering: after a scripted workload -- known bytes stored for a known time, known
numbers of read and write requests, known ingress and egress -- the signed usage records equal
what the workload did, exactly, across a ``kill -9`` and a graceful restart in the middle of
it, and they stay the same (immutable) after further restarts."""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.broker.conftest import OSB, BrokerNode, bound, s3_client, wait_for
from tests.conftest import BIN

PERIOD_MS = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def canonical(value: Any) -> bytes:
    """The canonical JSON the node signs: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


class Tally:
    """What a client did, counted from botocore's own events: requests by pricing class
    (GET/HEAD read; PUT/COPY/POST/LIST write; deletes free) and response body bytes."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.read = self.write = self.bytes_in = self.bytes_out = 0
        client.meta.events.register("after-call.s3", self._after_call)

    def _after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        op = model.name
        if op.startswith(("Get", "Head")):
            self.read += 1
        elif not op.startswith(("Delete", "Abort")):
            self.write += 1
        if model.http["method"] != "HEAD":
            self.bytes_out += int(http_response.headers.get("content-length", 0))

    def put(self, bucket: str, key: str, size: int) -> bytes:
        body = os.urandom(size)
        self.client.put_object(Bucket=bucket, Key=key, Body=body)
        self.bytes_in += size
        return body


def workload(t: Tally, bucket: str, tag: str, puts: int, gets: int) -> None:
    s3 = t.client
    for i in range(puts):
        t.put(bucket, f"{tag}-{i}", 1000 + 137 * i)
    for i in range(gets):
        s3.get_object(Bucket=bucket, Key=f"{tag}-{i % puts}")["Body"].read()
    s3.head_object(Bucket=bucket, Key=f"{tag}-0")
    s3.list_objects_v2(Bucket=bucket)
    s3.get_object(Bucket=bucket, Key=f"{tag}-0", Range="bytes=10-99")["Body"].read()
    s3.delete_object(Bucket=bucket, Key=f"{tag}-0")  # free: not a request to pay for
    t.put(bucket, f"{tag}-0", 10)


def usage(osb: OSB, instance_id: str) -> dict[str, Any]:
    resp = osb.usage(instance_id=instance_id, since="0")
    assert resp.status == 200, resp.body
    return dict(resp.json())


def totals(records: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("requests_read", "requests_write", "bytes_in", "bytes_out", "stored_byte_ms")
    return {k: sum(int(r[k]) for r in records) for k in keys}


def closed_past(osb: OSB, instance_id: str, moment_ms: int) -> dict[str, Any] | None:
    """The usage document once every period up to ``moment_ms`` is closed."""
    doc = usage(osb, instance_id)
    closed = doc["batch"]["closed_until"]
    if closed is None:
        return None
    return doc if iso_ms(closed) >= moment_ms else None


def iso_ms(text: str) -> int:
    import datetime as dt

    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def verify(doc: dict[str, Any], public_key_b64: str) -> None:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
    key.verify(base64.b64decode(doc["signature"]["value"]), canonical(doc["batch"]))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[BrokerNode]:
    n = BrokerNode(tmp_path / "data", period=PERIOD_MS // 1000)
    n.set_credentials()
    n.start()
    yield n
    n.stop()


def test_usage_records_are_exact_across_crashes_and_restarts(node: BrokerNode) -> None:
    osb = node.osb
    requests_iid, _, req_creds = bound(osb)
    storage_iid, _, store_creds = bound(osb)
    a = Tally(s3_client(req_creds))
    b = Tally(s3_client(store_creds))
    bucket_a, bucket_b = f"ma-{secrets.token_hex(5)}", f"mb-{secrets.token_hex(5)}"
    a.client.create_bucket(Bucket=bucket_a)
    b.client.create_bucket(Bucket=bucket_b)

    # Tenant B stores exactly one object of N bytes from t_put to t_del.
    size = 123_457
    put_start = now_ms()
    b.put(bucket_b, "held", size)
    put_end = now_ms()

    workload(a, bucket_a, "one", puts=3, gets=4)
    # The open period is marked as such.
    doc = usage(osb, requests_iid)
    open_records = [r for r in doc["batch"]["records"] if not r["closed"]]
    assert open_records
    assert all(iso_ms(r["period_end"]) > iso_ms(doc["batch"]["closed_until"] or "1970-01-01")
               for r in open_records)

    time.sleep(0.3)  # records are appended right after each response; let the last one land
    node.kill9()  # kill -9 in the middle of the workload...
    time.sleep(2.2)  # ...and stay down for whole periods: stored bytes still count
    node.start()
    workload(a, bucket_a, "two", puts=2, gets=3)
    node.restart()  # and a graceful restart
    workload(a, bucket_a, "three", puts=1, gets=1)
    assert len(b.client.get_object(Bucket=bucket_b, Key="held")["Body"].read()) == size
    time.sleep(1.5)

    del_start = now_ms()
    b.client.delete_object(Bucket=bucket_b, Key="held")
    del_end = now_ms()

    # Wait until every period up to the deletion (and one more) is closed.
    doc_a = wait_for(lambda: closed_past(osb, requests_iid, del_end + PERIOD_MS), timeout=30)
    doc_b = wait_for(lambda: closed_past(osb, storage_iid, del_end + PERIOD_MS), timeout=30)
    recs_a = [r for r in doc_a["batch"]["records"] if r["closed"]]
    recs_b = [r for r in doc_b["batch"]["records"] if r["closed"]]

    # Requests and bytes: exactly what the clients did, across the crash and the restart.
    got_a = totals(doc_a["batch"]["records"])
    assert (got_a["requests_read"], got_a["requests_write"]) == (a.read, a.write)
    assert (got_a["bytes_in"], got_a["bytes_out"]) == (a.bytes_in, a.bytes_out)
    got_b = totals(doc_b["batch"]["records"])
    assert (got_b["requests_read"], got_b["requests_write"]) == (b.read, b.write)
    assert (got_b["bytes_in"], got_b["bytes_out"]) == (b.bytes_in, b.bytes_out)
    assert a.read >= 10 and a.write >= 10

    # Storage: every period entirely inside [put_end, del_start) holds N bytes for the whole
    # period -- exactly N * period byte-milliseconds, including the periods the node was down.
    inside = [r for r in recs_b
              if iso_ms(r["period_start"]) >= put_end and iso_ms(r["period_end"]) <= del_start]
    assert len(inside) >= 4
    for r in inside:
        assert r["stored_byte_ms"] == str(size * PERIOD_MS), r
        assert r["stored_bytes_end"] == str(size)
        hours = (Decimal(size * PERIOD_MS) / 3_600_000).quantize(Decimal("1e-12"))
        assert r["stored_byte_hours"] == str(hours)
    spans = sorted(iso_ms(r["period_start"]) for r in inside)
    assert spans == list(range(spans[0], spans[-1] + PERIOD_MS, PERIOD_MS))  # no gap
    # In total: between what the client saw as certainly stored and as possibly stored.
    total = got_b["stored_byte_ms"]
    assert size * (del_start - put_end) <= total <= size * (del_end - put_start)
    # After the deletion nothing more is stored.
    assert all(int(r["stored_byte_ms"]) == 0 for r in recs_b
               if iso_ms(r["period_start"]) >= del_end)

    # The batch is signed by the key the node publishes; an edited record fails.
    identity = osb.request("GET", "/federation/identity", auth=False, version=None).json()
    assert doc_a["signature"]["public_key"] == identity["public_key"]
    assert doc_a["batch"]["node"]["public_key"] == identity["public_key"]
    verify(doc_a, identity["public_key"])
    verify(doc_b, identity["public_key"])
    tampered = copy.deepcopy(doc_a)
    tampered["batch"]["records"][0]["requests_read"] = str(
        int(tampered["batch"]["records"][0]["requests_read"]) + 1)
    with pytest.raises(InvalidSignature):
        verify(tampered, identity["public_key"])
    dropped = copy.deepcopy(doc_b)
    dropped["batch"]["records"].pop()
    with pytest.raises(InvalidSignature):
        verify(dropped, identity["public_key"])

    # Closed records are immutable: the same after another crash and restart.
    cutoff = iso_ms(doc_a["batch"]["closed_until"])
    node.restart(kill=True)
    for iid, before in ((requests_iid, recs_a), (storage_iid, recs_b)):
        after = [r for r in usage(osb, iid)["batch"]["records"]
                 if r["closed"] and iso_ms(r["period_end"]) <= cutoff]
        assert after == [r for r in before if iso_ms(r["period_end"]) <= cutoff]
    node.restart()
    again = usage(osb, requests_iid)
    verify(again, identity["public_key"])
    assert totals([r for r in again["batch"]["records"]
                   if iso_ms(r["period_end"]) <= cutoff]) == totals(
        [r for r in recs_a if iso_ms(r["period_end"]) <= cutoff])

    # The operator's view of the same tenant agrees (by instance id, while the node runs).
    out = subprocess.run(
        [str(BIN), "usage", "show", requests_iid, "--since", "0", "--json",
         "--data-dir", str(node.data_dir)], check=True, capture_output=True, text=True)
    cli = json.loads(out.stdout)
    assert cli["instance_id"] == requests_iid
    cli_closed = [r for r in cli["records"] if iso_ms(r["period_end"]) <= cutoff]
    api_closed = [{k: v for k, v in r.items() if k != "instance_id"}
                  for r in recs_a if iso_ms(r["period_end"]) <= cutoff]
    assert cli_closed == api_closed


def test_usage_query_parameters(node: BrokerNode) -> None:
    osb = node.osb
    iid, _, creds = bound(osb)
    s3 = s3_client(creds)
    s3.create_bucket(Bucket=f"q-{secrets.token_hex(5)}")
    doc = wait_for(lambda: (d := usage(osb, iid))["batch"]["records"] and d, timeout=10)
    batch = doc["batch"]
    assert batch["format"] == "silverlining-usage/1"
    assert batch["period_seconds"] == 1
    assert batch["query"]["instance_id"] == iid
    record = batch["records"][0]
    assert set(record) == {"instance_id", "period_start", "period_end", "closed",
                           "requests_read", "requests_write", "bytes_in", "bytes_out",
                           "stored_byte_ms", "stored_byte_hours", "stored_bytes_end"}
    assert all(isinstance(v, str) for k, v in record.items() if k != "closed")
    # All instances at once, in (period, instance) order.
    everything = osb.usage(since="0").json()["batch"]
    keys = [(r["period_start"], r["instance_id"]) for r in everything["records"]]
    assert keys == sorted(keys)
    # A window: ISO 8601 or epoch seconds.
    start = record["period_start"]
    window = osb.usage(instance_id=iid, since=start, until=record["period_end"]).json()
    assert [r["period_start"] for r in window["batch"]["records"]] == [start]
    later = int(time.time()) + 3600
    assert osb.usage(instance_id=iid, since=str(later), until=str(later + 60)).json()[
        "batch"]["records"] == []
    # Bad parameters: 400; an unknown instance: 404.
    for bad in ({"since": "yesterday"}, {"until": "2024-13-01"}, {"limit": "0"},
                {"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"},
                {"colour": "blue"}):
        resp = osb.usage(**bad)
        assert resp.status == 400, (bad, resp.body)
        assert resp.json()["error"] == "BadRequest"
    assert osb.usage(instance_id="no-such-instance").status == 404


def test_usage_pages_end_at_period_boundaries(node: BrokerNode) -> None:
    osb = node.osb
    iids = []
    for _ in range(3):
        iid, _, creds = bound(osb)
        s3 = s3_client(creds)
        bucket = f"p-{secrets.token_hex(5)}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100)
        iids.append(iid)
    start = now_ms()
    wait_for(lambda: closed_past(osb, iids[0], start + 3 * PERIOD_MS), timeout=20)
    full = osb.usage(since="0").json()["batch"]
    closed = [r for r in full["records"] if r["closed"]]
    assert len(closed) >= 9
    # limit=2: each page ends at a period boundary; following next_since walks them all.
    seen: list[dict[str, Any]] = []
    since = "0"
    until = full["query"]["until"]
    for _ in range(100):
        page = osb.usage(since=since, until=until, limit="2").json()["batch"]
        seen.extend(page["records"])
        if page["next_since"] is None:
            break
        since = page["next_since"]
    assert [r for r in seen if r["closed"]] == closed
