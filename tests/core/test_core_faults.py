"""A provider broken on purpose fails the relevant check, with evidence that shows the fault.

The broken provider is an honest one (moto here; the node in test_core_node.py) behind
:class:`FaultProxy`. First the proxy is shown to be transparent, so that what fails afterwards
is the fault and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import Endpoint, Run, run_core
from .faultproxy import DROP_ETAG, FLIP_RANGE_BYTE, REVERSE_LISTING, FaultProxy, reverse_contents

SELECTED = ["s3.list.order", "s3.list.pagination", "s3.object.put-get", "s3.object.range"]


def run_through_proxy(endpoint: Endpoint, faults: frozenset[str], tmp_path: Path) -> Run:
    with FaultProxy(endpoint.url, faults) as proxy:
        args = [*endpoint.check_args(alt=False)]
        args[args.index(endpoint.url)] = proxy.endpoint
        for check_id in SELECTED:
            args += ["--only", check_id]
        run = run_core(args, tmp_path / "report.json")
        assert proxy.requests > 0
    return run


def test_reverse_contents_keeps_everything_else() -> None:
    a, b = b"<Contents><Key>a</Key></Contents>", b"<Contents><Key>b</Key></Contents>"
    body = b"<L><Name>n</Name>" + a + b + b"<M/></L>"
    assert reverse_contents(body) == b"<L><Name>n</Name>" + b + a + b"<M/></L>"


def assert_proxy_is_transparent(endpoint: Endpoint, tmp_path: Path) -> None:
    run = run_through_proxy(endpoint, frozenset(), tmp_path)
    assert run.ids_with("passed") == set(SELECTED), run.output
    assert run.exit_code == 0


def assert_listing_order_fault_caught(endpoint: Endpoint, tmp_path: Path) -> None:
    run = run_through_proxy(endpoint, frozenset({REVERSE_LISTING}), tmp_path)
    assert run.ids_with("failed") == {"s3.list.order", "s3.list.pagination"}
    evidence = run.result("s3.list.order")["evidence"]
    assert evidence["request"].startswith("GET /core-") and "list-type=2" in evidence["request"]
    assert evidence["expected"].startswith("the keys, in order = ['0', '9', 'A', 'B', 'Z', '_'")
    assert evidence["got"].startswith(
        "the keys, in order = ['\u65e5\u672c', '\u00f1', '\u00e9', '~', 'z'"
    )
    assert run.exit_code == 1


def assert_missing_etag_caught(endpoint: Endpoint, tmp_path: Path) -> None:
    run = run_through_proxy(endpoint, frozenset({DROP_ETAG}), tmp_path)
    assert run.ids_with("failed") == {"s3.object.put-get"}
    evidence = run.result("s3.object.put-get")["evidence"]
    assert evidence["request"].startswith("PUT /core-")
    assert evidence["expected"].startswith("the ETag PutObject returned = '\"")
    assert evidence["got"] == "the ETag PutObject returned = None"


def assert_corrupted_range_caught(endpoint: Endpoint, tmp_path: Path) -> None:
    run = run_through_proxy(endpoint, frozenset({FLIP_RANGE_BYTE}), tmp_path)
    assert run.ids_with("failed") == {"s3.object.range"}
    evidence = run.result("s3.object.range")["evidence"]
    assert "Range: bytes=0-0" in evidence["request"]
    assert "first difference at byte 0" in evidence["got"]


def test_the_proxy_alone_changes_nothing(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_proxy_is_transparent(moto_endpoint, tmp_path)


def test_listing_out_of_order_fails_list_order(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_listing_order_fault_caught(moto_endpoint, tmp_path)


def test_a_missing_etag_fails_put_get(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_missing_etag_caught(moto_endpoint, tmp_path)


def test_a_corrupted_range_fails_range(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    assert_corrupted_range_caught(moto_endpoint, tmp_path)
