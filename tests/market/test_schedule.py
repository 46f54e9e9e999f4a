"""The market's schedule, with short intervals: prices are refreshed from the catalog (and a
subscription keeps the price it was bought at), and a provider that stops passing Core is
delisted by the scheduled re-certification, its subscription flagged and still working."""

from __future__ import annotations

import pytest

from tests.core.faultproxy import DROP_ETAG
from tests.market.conftest import (
    NODE_CONFIG,
    Market,
    eventually,
    s3_for,
    start_provider,
    stop_provider,
)

pytestmark = pytest.mark.timeout(600)


def test_prices_refresh_and_recertification_on_schedule(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("schedule")
    provider = start_provider(base, "drifty", "eu-south-1", "IT", "0.020", "0.020",
                              proxied=True)
    market = Market(base / "market", extra_args=(
        "--refresh-interval", "2", "--recertify-interval", "25", "--broker-timeout", "10"))
    try:
        market.start()
        market.add_provider(provider)
        buyer = market.new_buyer("early-bird")
        [sub] = market.json("buy", "object-storage", token=buyer)["subscriptions"]
        assert sub["prices"]["gb_month"] == "0.020"

        # The operator raises the price: the market picks it up on its own.
        provider.node.stop()
        assert provider.proxy is not None
        (base / "drifty.toml").write_text(NODE_CONFIG.format(
            endpoint=provider.proxy.endpoint, jurisdiction="IT", name="drifty",
            gb_month="0.040", egress_gb="0.020", write_1k="0.0050", read_1k="0.0004"))
        provider.node.start()
        eventually(lambda: market.json("offers")[0]["prices"]["gb_month"] == "0.040", 30,
                   "the new price in the offers")
        # ... but what was bought keeps the price it was bought at.
        assert market.json("subscriptions", token=buyer)[0]["prices"]["gb_month"] == "0.020"

        # The provider stops being faithful: the scheduled re-certification delists it.
        provider.proxy.faults.add(DROP_ETAG)
        eventually(lambda: market.json("providers", "list")[0]["status"] == "delisted", 120,
                   "the provider delisted by the schedule")
        assert market.json("offers") == []
        [flagged] = market.json("subscriptions", token=buyer)
        assert flagged["flags"] == ["provider-delisted"] and flagged["status"] == "active"
        s3 = s3_for(market.json("subscription", sub["id"], "--reveal", token=buyer))
        s3.create_bucket(Bucket="still-here")
        assert s3.list_buckets()["Buckets"][0]["Name"] == "still-here"
        audit = market.json("audit", "--limit", "1000")
        scheduled = [e for e in audit if e["actor"] == "market"]
        assert {"provider.prices", "provider.certify"} <= {e["action"] for e in scheduled}
    finally:
        market.stop()
        stop_provider(provider)
