"""The market on a real PostgreSQL: two market processes share one database (and one data dir
for the keys), a provider onboarded through one is sold through the other, and the state
survives a restart of both."""

from __future__ import annotations

import pytest

from tests.market.conftest import Market, s3_for, start_provider, stop_provider

pytestmark = pytest.mark.timeout(600)


def test_two_markets_share_one_postgresql(pg_url: str,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("market-pg")
    provider = start_provider(base, "pgnode", "eu-central-1", "DE", "0.020", "0.010")
    args = ("--database-url", pg_url, "--broker-timeout", "10")
    first = Market(base / "market", extra_args=args)
    second = Market(base / "market", extra_args=args)
    try:
        first.start()
        assert first.admin_token.startswith("slm_")
        second.start()
        # One database: the second start finds the admin and prints no new token; both
        # write the same log, whose only token is the first's.
        assert second.admin_token == first.admin_token
        assert first.log_path.read_text().count("slm_") == 1
        first.add_provider(provider)
        assert [p["status"] for p in second.json("providers", "list")] == ["listed"]
        buyer = second.new_buyer("pg-buyer")
        [sub] = second.json("buy", "object-storage", "--expect-gb", "5",
                            token=buyer)["subscriptions"]
        s3 = s3_for(sub)
        s3.create_bucket(Bucket="on-postgres")
        s3.put_object(Bucket="on-postgres", Key="k", Body=b"pg")
        # The secret sealed by one process opens in the other (shared market.key).
        revealed = first.json("subscription", sub["id"], "--reveal", token=buyer)
        assert revealed["secret_access_key"] == sub["secret_access_key"]

        first.stop()
        second.stop()
        first.start()
        assert [s["provider"] for s in first.json("subscriptions", token=buyer)] == ["pgnode"]
        actions = {e["action"] for e in first.json("audit", "--limit", "1000")}
        assert {"account.create", "provider.certify", "subscription.create"} <= actions
    finally:
        first.stop()
        second.stop()
        stop_provider(provider)
