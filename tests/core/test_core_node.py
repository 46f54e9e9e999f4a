"""Core against a real Silver Lining node: s3-full passes, quickly, and faults are caught.

These use the session fixture ``node`` from tests/conftest.py (a ``silverlining serve`` child
process with attributes endpoint, access_key, secret_key, region and a method
new_credentials(account_name) -> (access key id, secret)). They carry the ``node`` marker:
``pytest -m "not node"`` runs Core's tests without a node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from silverlining.core.cli import core

from .conftest import Endpoint, Run, run_core
from .test_core_faults import (
    assert_corrupted_range_caught,
    assert_listing_order_fault_caught,
    assert_missing_etag_caught,
    assert_proxy_is_transparent,
)

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def node_endpoint(node: Any) -> Endpoint:
    alt_access_key, alt_secret_key = node.new_credentials("core-alternate")
    return Endpoint(
        node.endpoint, node.access_key, node.secret_key, alt_access_key, alt_secret_key,
        node.region,
    )  # fmt: skip


@pytest.fixture(scope="module")
def node_full_run(node_endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Run:
    directory = tmp_path_factory.mktemp("core-node")
    key = directory / "signer.pem"
    assert CliRunner().invoke(core, ["keygen", str(key)]).exit_code == 0
    return run_core(
        [*node_endpoint.check_args(), "--level", "s3-full", "--sign-with", str(key)],
        directory / "report.json",
    )


def _failures(run: Run) -> str:
    lines = []
    for item in run.report.get("checks", []):
        if item["status"] != "passed":
            lines.append(f"{item['id']} [{item['status']}]: {json.dumps(item['evidence'])}")
            lines.append(f"    reason: {item['reason']}")
    return "\n".join(lines) or run.output


def test_node_passes_s3_full(node_full_run: Run) -> None:
    assert node_full_run.exit_code == 0, _failures(node_full_run)
    verdict = node_full_run.report["verdict"]
    assert verdict["passed"] is True and verdict["certified"] == "s3-full"
    assert node_full_run.ids_with("passed") == {c["id"] for c in node_full_run.report["checks"]}
    assert node_full_run.report["leftover_buckets"] == []


def test_s3_full_against_the_node_takes_under_a_minute(node_full_run: Run) -> None:
    assert node_full_run.report["duration_ms"] < 60_000, node_full_run.report["duration_ms"]


def test_the_node_report_verifies(node_full_run: Run, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(node_full_run.report))
    result = CliRunner().invoke(core, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    node_full_run.report["checks"][0]["status"] = "failed"
    try:
        path.write_text(json.dumps(node_full_run.report))
        assert CliRunner().invoke(core, ["verify", str(path)]).exit_code == 1
    finally:
        node_full_run.report["checks"][0]["status"] = "passed"


def test_fault_proxy_in_front_of_the_node_is_transparent(
    node_endpoint: Endpoint, tmp_path: Path
) -> None:
    assert_proxy_is_transparent(node_endpoint, tmp_path)


def test_node_with_listing_out_of_order_fails_list_order(
    node_endpoint: Endpoint, tmp_path: Path
) -> None:
    assert_listing_order_fault_caught(node_endpoint, tmp_path)


def test_node_without_etag_fails_put_get(node_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_missing_etag_caught(node_endpoint, tmp_path)


def test_node_with_corrupted_ranges_fails_range(node_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_corrupted_range_caught(node_endpoint, tmp_path)
