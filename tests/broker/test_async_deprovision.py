"""Deprovisioning a large tenant in the background: 202 with an operation, last_operation
polling, 410 once the instance is gone -- and it finishes even across a kill -9."""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.broker.conftest import ASYNC_OBJECTS, OSB, BrokerNode, bound, s3_client, wait_for


def fill(creds: dict[str, str], objects: int, *, blobs: int = 0) -> str:
    """A bucket with ``objects`` small objects and ``blobs`` large ones (blob files)."""
    s3 = s3_client(creds)
    bucket = f"big-{secrets.token_hex(5)}"
    s3.create_bucket(Bucket=bucket)

    def put(i: int) -> None:
        body = os.urandom(100 * 1024) if i < blobs else b"%d" % i
        s3.put_object(Bucket=bucket, Key=f"k/{i:05d}", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(objects)))
    return bucket


def deprovision_async(osb: OSB, iid: str) -> str:
    resp = osb.deprovision(iid, accepts_incomplete=True)
    assert resp.status == 202, resp.body
    operation = resp.json()["operation"]
    assert isinstance(operation, str) and operation
    return str(operation)


def wait_gone(osb: OSB, iid: str, operation: str) -> list[str]:
    """Poll last_operation as a platform does, until 410; returns the states seen."""
    states: list[str] = []

    def poll() -> bool:
        resp = osb.last_operation(iid, operation)
        if resp.status == 410:
            return True
        assert resp.status == 200, resp.body
        body = resp.json()
        assert body["state"] in ("in progress", "succeeded"), body
        if body["state"] == "in progress":
            assert resp.headers["retry-after"] == "1"
        states.append(body["state"])
        return False

    wait_for(poll, timeout=60, interval=0.05)
    return states


def test_large_tenant_is_deprovisioned_in_the_background(osb: OSB) -> None:
    iid, bid, creds = bound(osb)
    fill(creds, 400)
    assert osb.unbind(iid, bid).status == 200
    operation = deprovision_async(osb, iid)
    # A re-sent DELETE while it runs: 202 with the same operation (or 410 once done).
    again = osb.deprovision(iid, accepts_incomplete=True)
    assert (again.status, again.json()) in ((202, {"operation": operation}),
                                            (410, again.json()))
    # Another operation id is not this instance's.
    wrong = osb.last_operation(iid, "deprovision-0000")
    assert wrong.status in (400, 410)
    wait_gone(osb, iid, operation)
    assert osb.request("GET", f"/v2/service_instances/{iid}").status == 404
    assert osb.deprovision(iid, accepts_incomplete=True).status == 410
    with pytest.raises(ClientError):
        s3_client(creds).list_buckets()


def test_small_tenants_and_platforms_without_async_are_served_synchronously(osb: OSB) -> None:
    # Small: synchronous even when the platform accepts an asynchronous answer.
    iid, bid, creds = bound(osb)
    fill(creds, ASYNC_OBJECTS - 1)
    osb.unbind(iid, bid)
    assert osb.deprovision(iid, accepts_incomplete=True).status == 200
    # Large, but the platform does not accept incomplete operations: done before answering.
    iid, bid, creds = bound(osb)
    fill(creds, ASYNC_OBJECTS + 3)
    osb.unbind(iid, bid)
    resp = osb.deprovision(iid)
    assert (resp.status, resp.json()) == (200, {})
    assert osb.last_operation(iid).status == 410


def test_background_deprovision_finishes_after_a_crash(tmp_path: Path) -> None:
    node = BrokerNode(tmp_path / "data")
    node.set_credentials()
    node.start()
    try:
        osb = node.osb
        iid, bid, creds = bound(osb)
        fill(creds, 1200, blobs=4)
        blobs = node.blob_paths(iid)
        assert len(blobs) == 4
        osb.unbind(iid, bid)
        operation = deprovision_async(osb, iid)
        node.kill9()  # most likely in the middle of it
        node.start()  # resumes interrupted deprovisions
        wait_gone(osb, iid, operation)
        assert not any(p.exists() for p in blobs)
        assert node.blob_paths(iid) == []
    finally:
        node.stop()
