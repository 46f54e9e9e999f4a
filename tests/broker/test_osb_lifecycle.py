"""A market's whole journey through the OSB endpoints: catalog, provision, bind, use the
credentials with boto3, unbind, deprovision -- and what each step guarantees."""

from __future__ import annotations

import os
import secrets
import sqlite3
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.broker.conftest import (
    OSB,
    SMALL,
    STANDARD,
    TINY,
    BrokerNode,
    bound,
    new_id,
    s3_client,
)


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_catalog_lists_the_configured_plans_with_prices(osb: OSB, broker_node: BrokerNode
                                                        ) -> None:
    resp = osb.request("GET", "/v2/catalog")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    (service,) = resp.json()["services"]
    assert service["name"] == "object-storage"
    assert service["bindable"] is True
    assert service["instances_retrievable"] is True
    assert service["bindings_retrievable"] is True
    assert service["plan_updateable"] is True
    plans = {p["name"]: p for p in service["plans"]}
    assert set(plans) == {"standard", "small", "tiny"}
    standard = plans["standard"]
    assert standard["id"] == STANDARD
    assert standard["free"] is False
    prices = standard["metadata"]["prices"]
    # Money is decimal text, exactly as configured (never a float).
    assert prices == {"currency": "EUR", "gb_month": "0.020", "egress_gb": "0.010",
                      "write_1k": "0.0050", "read_1k": "0.00040",
                      "units": {"gb_bytes": 1_000_000_000, "month_hours": 730}}
    assert all(isinstance(v, str) for k, v in prices.items() if k != "units")
    assert Decimal(prices["gb_month"]) == Decimal("0.02")
    assert standard["metadata"]["region"] == "us-east-1"
    assert standard["metadata"]["jurisdiction"] == "DE"
    assert standard["metadata"]["quota"] == {"bytes": None, "objects": None}
    assert plans["small"]["metadata"]["quota"] == {"bytes": 2000, "objects": 3}
    assert plans["tiny"]["free"] is True
    # The service id is the node's own, and is what /federation/identity reports.
    identity = osb.request("GET", "/federation/identity", version=None, auth=None).json()
    assert service["id"] == identity["service_id"]
    assert service["metadata"]["endpoint"] == broker_node.endpoint


def test_provision_bind_use_unbind_deprovision(osb: OSB) -> None:
    iid = new_id("inst")
    first = osb.provision(iid)
    assert (first.status, first.json()) == (201, {})
    # Same id, same body: 200 (idempotent); different attributes: 409.
    assert osb.provision(iid).status == 200
    assert osb.provision(iid, SMALL).status == 409
    got = osb.request("GET", f"/v2/service_instances/{iid}")
    assert got.status == 200
    assert got.json() == {"service_id": osb.service_id, "plan_id": STANDARD, "parameters": {}}
    assert osb.last_operation(iid).json() == {"state": "succeeded"}

    bid = new_id("bind")
    made = osb.bind(iid, bid, bind_resource={"app_guid": "app-1"})
    assert made.status == 201
    body = made.json()
    creds = body["credentials"]
    assert set(creds) == {"endpoint", "region", "access_key_id", "secret_access_key"}
    assert body["endpoints"][0]["ports"] == [str(osb.port)]
    # Re-sent bind: 200 and the very same credentials; another body: 409.
    again = osb.bind(iid, bid, bind_resource={"app_guid": "app-1"})
    assert again.status == 200
    assert again.json()["credentials"] == creds
    assert osb.bind(iid, bid, bind_resource={"app_guid": "app-2"}).status == 409
    fetched = osb.request("GET", f"/v2/service_instances/{iid}/service_bindings/{bid}")
    assert fetched.status == 200
    assert fetched.json()["credentials"] == creds

    s3 = s3_client(creds)
    bucket = f"b-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello, market")
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"hello, market"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["hello.txt"]

    assert osb.unbind(iid, bid).status == 200
    with pytest.raises(ClientError) as refused:
        s3.list_objects_v2(Bucket=bucket)
    assert error_code(refused.value) == "InvalidAccessKeyId"
    assert osb.unbind(iid, bid).status == 410  # the spec's answer for an unknown binding
    assert osb.request(
        "GET", f"/v2/service_instances/{iid}/service_bindings/{bid}").status == 404

    done = osb.deprovision(iid)
    assert (done.status, done.json()) == (200, {})
    assert osb.request("GET", f"/v2/service_instances/{iid}").status == 404
    assert osb.deprovision(iid).status == 410
    assert osb.last_operation(iid).status == 410
    # Instance ids are never reused: the tombstone keeps the id's usage history.
    assert osb.provision(iid).status == 409


def test_revoked_binding_key_is_refused_on_the_next_request(osb: OSB) -> None:
    iid, bid, creds = bound(osb)
    other = osb.bind(iid, new_id("bind")).json()["credentials"]
    s3, s3_other = s3_client(creds), s3_client(other)
    s3.create_bucket(Bucket=f"r-{secrets.token_hex(6)}")
    for _ in range(3):
        assert s3.list_buckets()["Buckets"]
        assert osb.unbind(iid, bid).status in (200, 410)
        # Within one request of the DELETE returning: the very next request is refused...
        with pytest.raises(ClientError) as refused:
            s3.list_buckets()
        assert error_code(refused.value) == "InvalidAccessKeyId"
        # ...and the instance's other binding is untouched.
        assert s3_other.list_buckets()["Buckets"]
        bid = new_id("bind")
        creds = osb.bind(iid, bid).json()["credentials"]
        s3 = s3_client(creds)


def test_deprovision_removes_the_tenants_data_from_disk(osb: OSB, broker_node: BrokerNode
                                                        ) -> None:
    iid, bid, creds = bound(osb)
    s3 = s3_client(creds)
    bucket = f"gone-{secrets.token_hex(6)}"
    marker = secrets.token_bytes(32)
    s3.create_bucket(Bucket=bucket)
    big = 100 * 1024  # above the node's inline-object size: these live in blob files
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"obj-{i}", Body=marker + os.urandom(big))
    s3.put_object(Bucket=bucket, Key="small", Body=marker + b"inline")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "obj-0"})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                   Body=marker + os.urandom(big))
    blobs = broker_node.blob_paths(iid)
    assert len(blobs) >= 5
    assert all(p.exists() for p in blobs)

    # Refused while a binding exists (and nothing is touched).
    refused = osb.deprovision(iid)
    assert refused.status == 422
    assert refused.json()["error"] == "BindingsExist"
    assert s3.head_object(Bucket=bucket, Key="obj-1")["ContentLength"] == 32 + big

    assert osb.unbind(iid, bid).status == 200
    assert osb.deprovision(iid).status == 200
    assert not any(p.exists() for p in blobs)
    assert broker_node.blob_paths(iid) == []  # no object or part row is left either
    # No byte of the tenant's data is left in any file of the data directory -- including the
    # metadata database and its log, where small objects live, if this SQLite erases deleted
    # content (secure_delete, the default of Debian's builds).
    erases = sqlite3.connect(":memory:").execute("PRAGMA secure_delete").fetchone()[0] == 1
    for root, _dirs, files in os.walk(broker_node.data_dir):
        for name in files:
            if name.startswith("meta.db") and not erases:
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                assert marker not in handle.read(), path
    with pytest.raises(ClientError) as gone:
        s3.list_buckets()
    assert error_code(gone.value) == "InvalidAccessKeyId"
    # The bucket name is free again for another tenant.
    _, _, creds2 = bound(osb)
    s3_client(creds2).create_bucket(Bucket=bucket)


def test_plan_change_applies_the_new_quota(osb: OSB) -> None:
    iid, _, creds = bound(osb)
    s3 = s3_client(creds)
    bucket = f"q-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a", Body=b"x" * 1500)

    def patch(body: dict[str, Any]) -> Any:
        return osb.request("PATCH", f"/v2/service_instances/{iid}",
                           {"service_id": osb.service_id, **body})

    # A plan whose quota the tenant already exceeds: 422, nothing changes.
    too_small = patch({"plan_id": TINY})
    assert too_small.status == 422
    assert too_small.json()["error"] == "UsageExceedsQuota"
    assert osb.request("GET", f"/v2/service_instances/{iid}").json()["plan_id"] == STANDARD

    assert patch({"plan_id": SMALL, "previous_values": {"plan_id": STANDARD}}).status == 200
    assert osb.request("GET", f"/v2/service_instances/{iid}").json()["plan_id"] == SMALL
    with pytest.raises(ClientError) as over:
        s3.put_object(Bucket=bucket, Key="b", Body=b"y" * 600)  # 2100 > 2000 bytes
    assert error_code(over.value) == "QuotaExceeded"
    s3.put_object(Bucket=bucket, Key="b", Body=b"y" * 500)
    # No plan_id: no change (200); an unknown plan: 400.
    assert patch({}).status == 200
    assert patch({"plan_id": "no-such-plan"}).status == 400
    # Back to standard: the quota is lifted.
    assert patch({"plan_id": STANDARD}).status == 200
    s3.put_object(Bucket=bucket, Key="c", Body=b"z" * 5000)
    # The deprovision hints must name the current plan.
    assert osb.deprovision(iid, SMALL).status == 400


def test_binding_errors(osb: OSB) -> None:
    iid, bid, _ = bound(osb)
    path = f"/v2/service_instances/{iid}/service_bindings"
    # Unknown instance: 404 for bind and GET; unknown binding: GET 404, DELETE 410.
    assert osb.bind(new_id("nope"), new_id("bind")).status == 404
    assert osb.request("GET", f"{path}/{new_id('bind')}").status == 404
    assert osb.unbind(iid, new_id("bind")).status == 410
    assert osb.unbind(new_id("nope"), new_id("bind")).status == 410
    # The service and plan must be the instance's.
    assert osb.bind(iid, new_id("bind"), SMALL).status == 400
    # DELETE without the required service_id/plan_id query: 400.
    assert osb.request("DELETE", f"{path}/{bid}").status == 400
    # Parameters: this service takes none.
    assert osb.bind(iid, new_id("bind"), parameters={"x": 1}).status == 400
    # Bindings are synchronous: last_operation of a live one says succeeded.
    last = osb.request("GET", f"{path}/{bid}/last_operation")
    assert (last.status, last.json()) == (200, {"state": "succeeded"})
