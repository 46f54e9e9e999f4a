"""Issue 6 end to end: a federation of three real nodes and one market, driven with the
`silverlining market` CLI. The tests share one federation and run in file order: onboarding
first, then orders, then the broker failure and the delisting (which break gamma)."""

from __future__ import annotations

import json
import subprocess
import uuid
from decimal import Decimal

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import BIN
from tests.core.faultproxy import DROP_ETAG, FAIL_PROVISION
from tests.market.conftest import BROKER_PASSWORD, Market, Provider, s3_for, start_provider

pytestmark = pytest.mark.timeout(900)

STORAGE_HEAVY = ("--expect-gb", "100", "--expect-egress-gb", "1", "--expect-requests", "10000")
EGRESS_HEAVY = ("--expect-gb", "10", "--expect-egress-gb", "1000", "--expect-requests", "10000")


def expected(p: Provider, gb: str, egress: str, requests: int) -> Decimal:
    writes = Decimal(requests) * Decimal("0.2")
    reads = Decimal(requests) - writes
    return (Decimal(gb) * Decimal(p.gb_month) + Decimal(egress) * Decimal(p.egress_gb)
            + writes / 1000 * Decimal("0.0050") + reads / 1000 * Decimal("0.0004"))


def test_onboarding_certifies_and_lists_all_three(federation: dict[str, Provider],
                                                  market: Market) -> None:
    for p in federation.values():
        out = market.add_provider(p)
        assert f"{p.name} is listed" in out.stdout
    listed = {p["name"]: p for p in market.json("providers", "list")}
    assert set(listed) == {"alpha", "beta", "gamma"}
    for name, p in federation.items():
        row = listed[name]
        assert row["status"] == "listed"
        assert row["level"] == "s3-full"
        assert row["certified_at"] is not None
        assert row["region"] == p.region and row["jurisdiction"] == p.jurisdiction
    table = market.run("providers", "list").stdout
    for name in federation:
        assert name in table
    assert "s3-full" in table and "listed" in table

    # The stored report is the signed Core document, and `core verify` accepts it.
    shown = market.json("providers", "show", "alpha")
    cert = shown["certifications"][0]
    assert cert["passed"] and cert["certified"] == "s3-full" and cert["failed"] == []
    report = market.run("report", cert["id"]).stdout
    path = market.data_dir.parent / "alpha-report.json"
    path.write_text(report)
    verify = subprocess.run([str(BIN), "core", "verify", str(path)], capture_output=True,
                            text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The throw-away certification tenants are gone from the providers.
    for p in federation.values():
        instances = json.loads(subprocess.run(
            [str(BIN), "broker", "instances", "--data-dir", str(p.node.data_dir), "--json"],
            capture_output=True, text=True, check=True).stdout)
        made = [i for i in instances if i["instance_id"].startswith("certify-")]
        assert len(made) == 2 and {i["state"] for i in made} == {"deprovisioned"}


def test_a_provider_failing_core_is_refused_with_the_failing_checks(
        federation: dict[str, Provider], market: Market,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    bad = start_provider(tmp_path_factory.mktemp("bad"), "delta", "us-west-2", "US", "0.001",
                         "0.001", proxied=True)
    try:
        assert bad.proxy is not None
        bad.proxy.faults.add(DROP_ETAG)
        out = market.add_provider(bad, check=False)
        assert out.returncode == 1
        assert "delta is refused" in out.stdout
        assert "Checks that did not pass" in out.stdout
        shown = market.json("providers", "show", "delta")
        assert shown["status"] == "refused"
        failed = {f["id"] for f in shown["certifications"][0]["failed"]}
        assert failed and all(f for f in failed)
        assert any(f in out.stdout for f in failed)
        # Refused providers sell nothing, however cheap.
        offers = market.json("offers")
        assert {o["provider"] for o in offers} == {"alpha", "beta", "gamma"}
    finally:
        bad.node.stop()
        if bad.proxy is not None:
            bad.proxy.__exit__(None, None, None)


def test_offers_filter_sort_and_estimate(federation: dict[str, Provider],
                                         market: Market) -> None:
    offers = market.json("offers", *STORAGE_HEAVY)
    assert [o["provider"] for o in offers] == ["gamma", "alpha", "beta"]
    for o in offers:
        want = expected(federation[o["provider"]], "100", "1", 10000)
        assert Decimal(o["expected_monthly_cost"]) == want.quantize(Decimal("0.0001"))
        assert o["level"] == "s3-full" and o["prices"]["currency"] == "EUR"
    by_egress = market.json("offers", "--sort", "price_egress_gb")
    assert [o["provider"] for o in by_egress] == ["beta", "gamma", "alpha"]
    assert [o["provider"] for o in market.json("offers", "--jurisdiction", "FR")] == ["beta"]
    assert [o["provider"] for o in market.json("offers", "--region", "eu-central-1")] == [
        "alpha"]
    cheap = market.json("offers", "--max-price-gb-month", "0.020")
    assert {o["provider"] for o in cheap} == {"alpha", "gamma"}
    table = market.run("offers", *EGRESS_HEAVY).stdout
    assert table.index("beta") < table.index("gamma") < table.index("alpha")


def test_cheapest_follows_the_usage_profile_and_the_keys_work(
        federation: dict[str, Provider], market: Market) -> None:
    buyer = market.new_buyer("storage-buyer")
    order = market.json("buy", "object-storage", *STORAGE_HEAVY, token=buyer)
    assert order["status"] == "fulfilled"
    [sub] = order["subscriptions"]
    assert sub["provider"] == "gamma"  # cheapest storage
    assert sub["prices"]["gb_month"] == "0.015"

    s3 = s3_for(sub)
    s3.create_bucket(Bucket="buyer-data")
    s3.put_object(Bucket="buyer-data", Key="hello.txt", Body=b"hello from the market")
    assert s3.get_object(Bucket="buyer-data", Key="hello.txt")["Body"].read() == (
        b"hello from the market")

    egress_buyer = market.new_buyer("egress-buyer")
    out = market.run("buy", "object-storage", *EGRESS_HEAVY, token=egress_buyer)
    assert "at beta" in out.stdout  # cheapest egress wins when egress dominates
    subs = market.json("subscriptions", token=egress_buyer)
    assert [s["provider"] for s in subs] == ["beta"]
    full = market.json("subscription", subs[0]["id"], "--reveal", token=egress_buyer)
    assert full["secret_access_key"] in out.stdout
    s3b = s3_for(full)
    s3b.create_bucket(Bucket="egress-data")
    assert s3b.list_buckets()["Buckets"][0]["Name"] == "egress-data"
    # Tenants never see each other: the first buyer's keys do not open the second's bucket.
    with pytest.raises(ClientError):
        s3_for({**sub, "endpoint": full["endpoint"]}).list_objects_v2(Bucket="egress-data")
    # ... nor do buyers see each other's subscriptions at the market.
    assert market.api("GET", f"/subscriptions/{full['id']}", token=buyer).status_code == 404


def test_spread_lands_on_distinct_providers(federation: dict[str, Provider],
                                            market: Market) -> None:
    buyer = market.new_buyer("spread-buyer")
    order = market.json("buy", "object-storage", *STORAGE_HEAVY, "--policy", "spread",
                        "--copies", "2", token=buyer)
    providers = [s["provider"] for s in order["subscriptions"]]
    assert providers == ["gamma", "alpha"]  # the two cheapest, one copy each
    for sub in order["subscriptions"]:
        s3 = s3_for(sub)
        s3.create_bucket(Bucket="copy")
        s3.put_object(Bucket="copy", Key="k", Body=b"v")
    too_many = market.run("buy", "object-storage", "--policy", "spread", "--copies", "4",
                          check=False, token=buyer)
    assert too_many.returncode == 1
    assert "only 3 provider(s) match" in too_many.stderr
    # All or nothing: nothing more was bought.
    subs = market.json("subscriptions", token=buyer)
    assert [s["status"] for s in subs] == ["active", "active"]


def test_cancel_asks_then_deletes(federation: dict[str, Provider], market: Market) -> None:
    buyer = market.new_buyer("cancel-buyer")
    [sub] = market.json("buy", "object-storage", "--region", "eu-central-1",
                        token=buyer)["subscriptions"]
    s3_for(sub).create_bucket(Bucket="doomed")
    refused = market.run("cancel", sub["id"], check=False, token=buyer)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert market.json("subscriptions", token=buyer)[0]["status"] == "active"
    market.run("cancel", sub["id"], "--yes", token=buyer)
    assert market.json("subscriptions", token=buyer)[0]["status"] == "cancelled"
    with pytest.raises(ClientError) as gone:
        s3_for(sub).list_buckets()
    assert gone.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_a_failing_broker_is_skipped_for_the_next_offer(federation: dict[str, Provider],
                                                        market: Market) -> None:
    gamma = federation["gamma"]
    assert gamma.proxy is not None
    buyer = market.new_buyer("fallback-buyer")
    gamma.proxy.faults.add(FAIL_PROVISION)
    try:
        out = market.run("buy", "object-storage", *STORAGE_HEAVY, token=buyer)
        # Three copies need gamma too: all or nothing, the two made are rolled back.
        spread = market.run("buy", "object-storage", "--policy", "spread", "--copies", "3",
                            token=buyer, check=False)
        assert spread.returncode == 1
        assert "only 2 could be provisioned" in spread.stderr
        assert spread.stderr.count("rolled-back") == 2
    finally:
        gamma.proxy.faults.discard(FAIL_PROVISION)
    assert "failed gamma" in out.stdout and "injected failure" in out.stdout
    assert "provisioned alpha" in out.stdout
    subs = market.json("subscriptions", token=buyer)
    assert [s["status"] for s in subs].count("active") == 1
    [sub] = [s for s in subs if s["status"] == "active"]
    assert sub["provider"] == "alpha"
    order = market.api("GET", f"/orders/{sub['order_id']}", token=buyer).json()
    assert [(a["provider"], a["outcome"]) for a in order["attempts"]] == [
        ("gamma", "failed"), ("alpha", "provisioned")]


def test_market_osb_catalog_provision_and_bind(federation: dict[str, Provider],
                                               market: Market) -> None:
    buyer = market.new_buyer("platform")
    auth = ("cf", buyer)
    headers = {"X-Broker-API-Version": "2.17"}
    catalog = httpx.get(market.url + "/v2/catalog", auth=auth, headers=headers).json()
    [service] = catalog["services"]
    plans = {p["name"]: p for p in service["plans"]}
    assert {"cheapest", "alpha-standard", "beta-standard", "gamma-standard"} <= set(plans)
    assert plans["beta-standard"]["metadata"]["prices"]["egress_gb"] == "0.010"
    assert httpx.get(market.url + "/v2/catalog", headers=headers).status_code == 401
    assert httpx.get(market.url + "/v2/catalog", auth=auth).status_code == 412

    instance, binding = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"service_id": service["id"], "plan_id": plans["cheapest"]["id"],
            "organization_guid": "org", "space_guid": "space",
            "parameters": {"expect_gb": 10, "expect_egress_gb": 1000}}
    url = f"{market.url}/v2/service_instances/{instance}"
    resp = httpx.put(url, json=body, auth=auth, headers=headers, timeout=120)
    assert resp.status_code == 201, resp.text
    assert httpx.put(url, json=body, auth=auth, headers=headers).status_code == 200
    [sub] = market.json("subscriptions", token=buyer)
    assert sub["provider"] == "beta"  # the same matching as `market buy`

    resp = httpx.put(f"{url}/service_bindings/{binding}", auth=auth, headers=headers,
                     json={"service_id": service["id"], "plan_id": plans["cheapest"]["id"]})
    assert resp.status_code == 201, resp.text
    creds = resp.json()["credentials"]
    s3 = s3_for(creds)
    s3.create_bucket(Bucket="from-a-platform")
    s3.put_object(Bucket="from-a-platform", Key="k", Body=b"platform bytes")
    assert s3.get_object(Bucket="from-a-platform", Key="k")["Body"].read() == b"platform bytes"

    assert httpx.delete(f"{url}/service_bindings/{binding}", auth=auth, headers=headers,
                        params={"service_id": service["id"]}).status_code == 200
    with pytest.raises(ClientError):
        s3.list_buckets()  # the binding's key is revoked at the provider
    resp = httpx.delete(url, auth=auth, headers=headers, params={"service_id": service["id"]},
                        timeout=120)
    assert resp.status_code == 200
    assert httpx.delete(url, auth=auth, headers=headers).status_code == 410
    assert market.json("subscriptions", token=buyer)[0]["status"] == "cancelled"


def test_roles_and_tokens(market: Market) -> None:
    buyer = market.new_buyer("nosy-buyer")
    assert market.api("GET", "/offers", token="slm_" + "0" * 59).status_code == 401
    assert httpx.get(market.url + "/api/v1/offers").status_code == 401
    denied = market.api("POST", "/providers", token=buyer, json={
        "name": "mine", "broker_url": "http://127.0.0.1:1", "broker_user": "u",
        "broker_password": "p"})
    assert denied.status_code == 403
    assert market.api("GET", "/audit", token=buyer).status_code == 403
    out = market.run("audit", "--limit", "5", "--token", buyer, check=False)
    assert out.returncode == 1 and "admin" in out.stderr and "Traceback" not in out.stderr
    # A revoked token is refused on the next call.
    made = market.json("tokens", "create", "nosy-buyer")
    assert market.api("GET", "/me", token=made["token"]).status_code == 200
    market.run("tokens", "revoke", made["token_id"])
    assert market.api("GET", "/me", token=made["token"]).status_code == 401
    # The CLI says clearly when the market is not there.
    gone = market.run("offers", "--market", "http://127.0.0.1:9", check=False)
    assert gone.returncode == 2 and "cannot reach the market" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_delisted_on_recertification_subscriptions_flagged(
        federation: dict[str, Provider], market: Market) -> None:
    gamma = federation["gamma"]
    assert gamma.proxy is not None
    buyer = market.new_buyer("gamma-buyer")
    [sub] = market.json("buy", "object-storage", "--region", "us-east-1",
                        token=buyer)["subscriptions"]
    gamma.proxy.faults.add(DROP_ETAG)  # gamma stops being faithful
    out = market.run("providers", "recertify", "gamma", check=False)
    assert out.returncode == 1 and "gamma is delisted" in out.stdout
    listed = {p["name"]: p["status"] for p in market.json("providers", "list")}
    assert listed["gamma"] == "delisted"
    assert "gamma" not in {o["provider"] for o in market.json("offers")}
    # The existing subscription keeps working, flagged.
    [flagged] = market.json("subscriptions", token=buyer)
    assert flagged["status"] == "active" and "provider-delisted" in flagged["flags"]
    full = market.json("subscription", sub["id"], "--reveal", token=buyer)
    s3 = s3_for(full)
    s3.create_bucket(Bucket="still-works")
    s3.put_object(Bucket="still-works", Key="k", Body=b"v")
    assert s3.get_object(Bucket="still-works", Key="k")["Body"].read() == b"v"
    # Fixed, re-certified: listed again and the flag is gone.
    gamma.proxy.faults.discard(DROP_ETAG)
    market.run("providers", "recertify", "gamma")
    assert market.json("subscriptions", token=buyer)[0]["flags"] == []
    actions = [e["action"] for e in market.json("audit", "--limit", "1000")]
    for action in ("provider.add", "provider.certify", "order.fulfilled", "order.failed",
                   "subscription.create", "subscription.cancel", "osb.provision"):
        assert action in actions
    assert BROKER_PASSWORD not in market.log_path.read_text()
