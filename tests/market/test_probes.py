"""Probes: figures per provider; a stopped provider becomes degraded (its buyers'
subscriptions flagged) and `--min-availability` keeps it out of matching."""

from __future__ import annotations

import pytest

from tests.market.conftest import Market, eventually, start_provider, stop_provider

pytestmark = pytest.mark.timeout(600)


def test_probes_measure_degrade_and_steer_matching(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("probes")
    steady = start_provider(base, "steady", "eu-central-1", "DE", "0.030", "0.020")
    flaky = start_provider(base, "flaky", "eu-central-1", "DE", "0.010", "0.010")
    market = Market(base / "market", extra_args=("--probe-interval", "1", "--broker-timeout",
                                                 "3"))
    try:
        market.start()
        market.add_provider(steady)
        market.add_provider(flaky)
        buyer = market.new_buyer("careful")
        [sub] = market.json("buy", "object-storage", "--region", "eu-central-1",
                            token=buyer)["subscriptions"]
        assert sub["provider"] == "flaky"  # cheapest, while it works

        def measured() -> bool:
            offers = market.json("offers")
            return len(offers) == 2 and all(
                o["availability"] == 100.0 and o["latency_p50_ms"] is not None
                and o["latency_p99_ms"] >= o["latency_p50_ms"] for o in offers)

        eventually(measured, 60, "probe figures on both offers")
        shown = market.json("providers", "show", "steady")
        assert shown["measured"]["availability"] == 100.0 and shown["health"] == "ok"
        assert "availability: 100.0%" in market.run("providers", "show", "steady").stdout
        history = market.api("GET", "/providers/steady/probes").json()
        assert history and all(p["ok"] for p in history)
        assert {"catalog_ms", "put_ms", "get_ms", "list_ms", "delete_ms"} <= set(
            history[-1]["detail"])

        flaky.node.stop()
        eventually(lambda: market.json("providers", "show", "flaky")["health"] == "degraded",
                   90, "flaky degraded after repeated failed probes")
        [flagged] = market.json("subscriptions", token=buyer)
        assert "provider-degraded" in flagged["flags"]
        avail = {o["provider"]: o["availability"] for o in market.json("offers")}
        assert avail["flaky"] < 99.9 <= avail["steady"]
        picky = market.json("offers", "--min-availability", "99.9")
        assert [o["provider"] for o in picky] == ["steady"]
        order = market.json("buy", "object-storage", "--min-availability", "99.9",
                            token=buyer)
        assert [s["provider"] for s in order["subscriptions"]] == ["steady"]
        assert "DEGRADED" in market.run("offers").stdout

        flaky.node.start()
        eventually(lambda: market.json("providers", "show", "flaky")["health"] == "ok", 90,
                   "flaky healthy again after a passing probe")
        flags = {s["provider"]: s["flags"] for s in market.json("subscriptions", token=buyer)}
        assert flags["flaky"] == []
    finally:
        market.stop()
        stop_provider(steady)
        stop_provider(flaky)
