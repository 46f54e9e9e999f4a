"""Issue 7 end to end: a buyer's scripted workload on a real node across several metering
periods (the node runs with 2-second periods, so "hours" pass in seconds), the market
collects the signed records, and the invoice, the provider's statement and the market's fee
equal what this test computes by hand from the raw records, to the micro-unit and the cent.

The test plan's prices are inflated so that seconds of storage show as non-zero amounts.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import pytest

from tests.core.faultproxy import TAMPER_USAGE
from tests.market.conftest import (
    BROKER_PASSWORD,
    BROKER_USER,
    Market,
    Provider,
    s3_for,
    start_provider,
    stop_provider,
)

pytestmark = pytest.mark.timeout(600)

PERIOD = 2
GB_MONTH, EGRESS_GB, WRITE_1K, READ_1K = (Decimal("2500000"), Decimal("90"), Decimal("5"),
                                          Decimal("0.4"))
FEE = Decimal(5)
MICRO = Decimal("0.000001")
OBJECT = 1_000_000


def line_micro(exact: Decimal) -> int:
    return int((exact / MICRO).quantize(Decimal(1), ROUND_HALF_EVEN))


def hand_priced(rec: dict[str, Any]) -> list[int]:
    """The rounding rule of docs/market.md, done independently: per record and usage type,
    exact, then half-even to a micro-unit."""
    byte_ms = Decimal(rec["stored_byte_ms"])
    amounts = [
        line_micro(byte_ms / (Decimal(10**9) * 3_600_000 * 730) * GB_MONTH),
        line_micro(Decimal(rec["bytes_out"]) / Decimal(10**9) * EGRESS_GB),
        line_micro(Decimal(rec["requests_write"]) / 1000 * WRITE_1K),
        line_micro(Decimal(rec["requests_read"]) / 1000 * READ_1K),
    ]
    quantities = [byte_ms, Decimal(rec["bytes_out"]), Decimal(rec["requests_write"]),
                  Decimal(rec["requests_read"])]
    return [a for a, q in zip(amounts, quantities, strict=True) if q]


def fee(amount: int) -> int:
    return int((Decimal(amount) * FEE / 100).quantize(Decimal(1), ROUND_HALF_EVEN))


def signed_records(p: Provider, instance_id: str) -> list[dict[str, Any]]:
    """The node's own closed records, straight from its federation API (not via the market)."""
    resp = httpx.get(p.node.endpoint + "/federation/usage",
                     params={"instance_id": instance_id, "since": "0"},
                     auth=(BROKER_USER, BROKER_PASSWORD))
    return [r for r in resp.json()["batch"]["records"] if r["closed"]]


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Market, Provider]]:
    base = tmp_path_factory.mktemp("billing")
    p = start_provider(base, "meter", "eu-central-1", "DE", str(GB_MONTH), str(EGRESS_GB),
                       proxied=True, write_1k=str(WRITE_1K), read_1k=str(READ_1K),
                       extra_args=("--metering-period", str(PERIOD)))
    m = Market(base / "market", extra_args=("--collect-interval", "3600",
                                            "--broker-timeout", "5"))
    try:
        m.start()
        m.add_provider(p)
        yield m, p
    finally:
        m.stop()
        stop_provider(p)


def wait_closed(p: Provider, instance_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = signed_records(p, instance_id)
        if len(records) >= count:
            return records
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} closed records after 60 s")


def test_invoice_statement_and_fee_equal_the_hand_computed_amounts(
        metered: tuple[Market, Provider]) -> None:
    market, provider = metered
    buyer = market.new_buyer("metered-buyer")
    [sub] = market.json("buy", "object-storage", token=buyer)["subscriptions"]
    s3 = s3_for(sub)
    body = b"x" * OBJECT
    # Three periods of scripted work: writes, then reads, then a listing and a delete.
    s3.create_bucket(Bucket="work")
    for i in range(3):
        s3.put_object(Bucket="work", Key=f"o{i}", Body=body)
    time.sleep(PERIOD * 1.2)
    for _ in range(2):
        for i in range(3):
            assert s3.get_object(Bucket="work", Key=f"o{i}")["Body"].read() == body
    time.sleep(PERIOD * 1.2)
    s3.list_objects_v2(Bucket="work")
    for i in range(3):  # deletes are free, and with nothing stored no more records come
        s3.delete_object(Bucket="work", Key=f"o{i}")

    def settled() -> bool:
        closed = signed_records(provider, sub["instance_id"])
        return bool(closed) and closed[-1]["stored_bytes_end"] == "0" and sum(
            int(r["requests_write"]) for r in closed) == 5

    deadline = time.monotonic() + 60
    while not settled():
        assert time.monotonic() < deadline, "the workload's periods did not close in 60 s"
        time.sleep(0.5)
    records = signed_records(provider, sub["instance_id"])
    # The counts are exactly the scripted workload's: CreateBucket, 3 PUTs, 1 LIST; 6 GETs.
    assert sum(int(r["requests_write"]) for r in records) == 1 + 3 + 1
    assert sum(int(r["requests_read"]) for r in records) == 6
    assert sum(int(r["bytes_out"]) for r in records) >= 6 * OBJECT
    assert len({r["period_start"] for r in records}) >= 3

    out = market.json("collect")
    assert out["errors"] == [] and out["disputes"] == 0 and out["records_new"] >= 3
    usage = market.json("usage", sub["id"], token=buyer)
    assert all(usage["signatures_verified"].values())
    collected = [r["record"] for r in usage["records"]]
    by_period = {r["period_start"]: r for r in signed_records(provider, sub["instance_id"])}
    for rec in collected:  # byte for byte what the node signed
        assert {k: v for k, v in rec.items() if k != "instance_id"} == {
            k: v for k, v in by_period[rec["period_start"]].items() if k != "instance_id"}

    lines = [a for rec in collected for a in hand_priced(rec)]
    total = sum(lines)
    fees = sum(fee(a) for a in lines)
    assert total > 0 and fees > 0

    [invoice] = market.json("invoices", "--create", "--from", "2000-01-01",
                            "--to", "2100-01-01", token=buyer)
    assert Decimal(invoice["total"]) == Decimal(total) * MICRO
    assert invoice["amount_due"] == str((Decimal(total) * MICRO).quantize(
        Decimal("0.01"), ROUND_HALF_EVEN))
    full = market.json("invoice", invoice["id"], token=buyer)
    types = {x["usage_type"] for x in full["lines"]}
    assert {"egress", "requests-write", "requests-read", "storage"} <= types

    statement = market.json("statement", "meter", "--from", "2000-01-01", "--to",
                            "2100-01-01")
    part = statement["currencies"]["EUR"]
    assert Decimal(part["owed"]) == Decimal(total - fees) * MICRO
    assert Decimal(part["market_fee"]) == Decimal(fees) * MICRO
    verified = market.json("ledger", "verify")
    assert verified["ok"] and verified["total_micro"] == 0

    # FOCUS CSV: the specification's column names, one row per invoice line.
    text = market.run("invoice", invoice["id"], "--format", "csv", token=buyer).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(full["lines"])
    for column in ("BilledCost", "EffectiveCost", "BillingPeriodStart", "ChargePeriodStart",
                   "ProviderName", "ServiceName", "ConsumedQuantity", "ConsumedUnit",
                   "PricingQuantity", "ListUnitPrice", "BillingCurrency", "ChargeCategory"):
        assert column in rows[0]
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(total) * MICRO
    egress = next(r for r in rows if r["ConsumedUnit"] == "GB")
    assert egress["ProviderName"] == "meter" and egress["ListUnitPrice"] == str(EGRESS_GB)
    assert Decimal(egress["ConsumedQuantity"]) == Decimal(
        sum(int(r["bytes_out"]) for r in collected)) / 10**9

    # Monthly invoices (the schedule makes them when a month ends; the admin can too): once.
    month = collected[-1]["period_start"][:7]
    in_month = sum(a for rec in collected if rec["period_start"][:7] == month
                   for a in hand_priced(rec))
    made = market.json("invoices", "--monthly", month)
    assert made["created"] >= 1
    assert market.json("invoices", "--monthly", month)["created"] == 0
    monthly = [i for i in market.json("invoices", token=buyer) if i["kind"] == "monthly"]
    assert len(monthly) == 1 and Decimal(monthly[0]["total"]) == Decimal(in_month) * MICRO

    # Collection again: the same ledger.
    again = market.json("collect")
    assert again["records_new"] == 0 and again["disputes"] == 0
    assert market.json("ledger", "verify") == verified


def test_tampered_records_are_disputed_and_an_outage_is_caught_up(
        metered: tuple[Market, Provider]) -> None:
    market, provider = metered
    assert provider.proxy is not None
    buyer = market.new_buyer("tamper-buyer")
    [sub] = market.json("buy", "object-storage", token=buyer)["subscriptions"]
    s3 = s3_for(sub)
    s3.create_bucket(Bucket="tamper")
    s3.put_object(Bucket="tamper", Key="k", Body=b"12345")
    time.sleep(PERIOD * 1.5)
    wait_closed(provider, sub["instance_id"], 1)
    before = market.json("ledger", "verify")

    provider.proxy.faults.add(TAMPER_USAGE)
    try:
        out = market.json("collect")
    finally:
        provider.proxy.faults.discard(TAMPER_USAGE)
    assert out["disputes"] >= 1
    disputes = market.json("disputes")
    assert any(d["kind"] == "bad-signature" and d["subscription_id"] == sub["id"]
               for d in disputes)
    assert market.json("ledger", "verify")["transactions"] == before["transactions"]

    # The provider is unreachable for a run: nothing is lost, the next run catches up.
    provider.node.stop()
    try:
        down = market.json("collect")
        assert any("meter" in e for e in down["errors"])
    finally:
        provider.node.start()
    up = market.json("collect")
    assert up["errors"] == [] and up["records_new"] >= 1
    usage = market.json("usage", sub["id"], token=buyer)
    assert sum(int(r["record"]["requests_write"]) for r in usage["records"]) == 2
    assert market.json("ledger", "verify")["ok"]


def test_a_provider_rewriting_a_closed_hour_is_disputed(
        metered: tuple[Market, Provider]) -> None:
    market, provider = metered
    buyer = market.new_buyer("history-buyer")
    [sub] = market.json("buy", "object-storage", token=buyer)["subscriptions"]
    s3_for(sub).create_bucket(Bucket="history")
    time.sleep(PERIOD * 1.5)
    [first] = wait_closed(provider, sub["instance_id"], 1)
    market.run("collect")
    invoice_before = market.json("usage", sub["id"], token=buyer)["total"]
    # The provider's database is edited behind the market's back: its records are re-signed
    # with valid signatures, but a closed period changed.
    db = sqlite3.connect(provider.node.data_dir / "meta.db", timeout=30)
    with db:
        changed = db.execute(
            "UPDATE usage_periods SET requests_write = requests_write + 7 WHERE account_id = "
            "(SELECT account_id FROM service_instances WHERE instance_id = ?)",
            (sub["instance_id"],)).rowcount
    db.close()
    assert changed >= 1
    out = market.json("collect")
    assert out["disputes"] >= 1
    kinds = {(d["kind"], d["subscription_id"]) for d in market.json("disputes")}
    assert ("changed-record", sub["id"]) in kinds
    # The first record stands: the bill did not change.
    assert market.json("usage", sub["id"], token=buyer)["total"] == invoice_before
    assert json.dumps(first)  # the original, as signed, is what the market keeps


def test_budget_alerts_and_the_block_at_100_percent(metered: tuple[Market, Provider]) -> None:
    market, provider = metered
    buyer = market.new_buyer("frugal-buyer")
    [sub] = market.json("buy", "object-storage", token=buyer)["subscriptions"]
    s3 = s3_for(sub)
    s3.create_bucket(Bucket="budget")
    for i in range(10):
        s3.put_object(Bucket="budget", Key=f"k{i}", Body=b"x" * 1000)
        s3.get_object(Bucket="budget", Key=f"k{i}")["Body"].read()
    time.sleep(PERIOD * 1.5)
    wait_closed(provider, sub["instance_id"], 1)
    market.run("collect")
    spend = Decimal(market.json("budget", "show", token=buyer)["spend"])
    assert spend > 0

    status = market.json("budget", "set", str(spend * 2), "--alerts", "40,80", token=buyer)
    assert [a["threshold"] for a in status["alerts"]] == [40]  # 50% used
    status = market.json("budget", "set", str((spend * Decimal("1.1")).quantize(MICRO)),
                         "--alerts", "40,80", token=buyer)
    assert [a["threshold"] for a in status["alerts"]] == [40, 80]
    assert not status["blocked"]
    market.run("buy", "object-storage", token=buyer)  # still allowed at ~91%

    status = market.json("budget", "set", str(spend), "--alerts", "40,80", token=buyer)
    assert status["blocked"] and [a["threshold"] for a in status["alerts"]] == [40, 80, 100]
    refused = market.run("buy", "object-storage", token=buyer, check=False)
    assert refused.returncode == 1 and "budget" in refused.stderr
    assert "HTTP 402" in refused.stderr
    # Existing data is never touched for budget reasons.
    assert s3.get_object(Bucket="budget", Key="k0")["Body"].read() == b"x" * 1000
    shown = market.run("budget", "show", token=buyer).stdout
    assert "NEW ORDERS BLOCKED" in shown and "alert: 100% reached" in shown
    audit = [e["action"] for e in market.json("audit", "--limit", "1000")]
    assert audit.count("budget.alert") >= 3

    market.json("budget", "set", str(spend * 10), token=buyer)
    market.run("buy", "object-storage", token=buyer)
