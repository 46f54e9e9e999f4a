"""The market's API against its own OpenAPI document: the document validates, and schemathesis
(examples, coverage, fuzzing and stateful phases) finds no server error, with a real provider
onboarded so that offers, orders and subscriptions hold real data."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.market.conftest import Market, Provider, start_provider, stop_provider

pytestmark = pytest.mark.timeout(900)
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Market, Provider]]:
    base = tmp_path_factory.mktemp("contract")
    provider = start_provider(base, "solo", "eu-north-1", "SE", "0.010", "0.020")
    m = Market(base / "market", extra_args=("--broker-timeout", "5"))
    try:
        m.start()
        m.add_provider(provider)
        yield m, provider
    finally:
        m.stop()
        stop_provider(provider)


def test_openapi_document_validates(onboarded: tuple[Market, Provider]) -> None:
    market, _ = onboarded
    document = httpx.get(market.url + "/api/v1/openapi.json").json()
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["info"]["title"] == "Silver Lining market"
    paths = set(document["paths"])
    for path in ("/api/v1/providers", "/api/v1/offers", "/api/v1/orders",
                 "/api/v1/subscriptions", "/api/v1/audit"):
        assert path in paths
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(("role", "budget"), [("admin", 60), ("buyer", 25)])
def test_schemathesis_finds_no_server_errors(onboarded: tuple[Market, Provider], role: str,
                                             budget: int, tmp_path: Path) -> None:
    # Time-boxed: the admin's run reaches recertify, which runs all of Core (~8 s) a call.
    market, _ = onboarded
    token = market.admin_token if role == "admin" else market.new_buyer(f"fuzz-{role}")
    out = subprocess.run(
        [str(SCHEMATHESIS), "run", market.url + "/api/v1/openapi.json",
         "--header", f"Authorization: Bearer {token}", "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "20261125", "--request-timeout", "60",
         "--max-time", str(budget), "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    summary = out.stdout[-4000:]
    assert out.returncode == 0, summary
    assert "Server error" not in out.stdout
    assert "Traceback" not in market.log_path.read_text()
