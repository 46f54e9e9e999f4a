"""Verdicts, canonical JSON and the report document."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from silverlining.canonical import canonical_json
from silverlining.core.evidence import Evidence
from silverlining.core.registry import Level
from silverlining.core.report import (
    CheckResult,
    Report,
    Status,
    compute_verdict,
    results_hash,
    verdict_from_document,
)


def result(check_id: str, level: Level, status: Status, reason: str | None = None) -> CheckResult:
    evidence = Evidence("GET /b/k", "HTTP 200", "HTTP 500") if status == Status.FAILED else None
    return CheckResult(check_id, level, "Proves something.", status, 12, reason, evidence)


BASIC_OK = [result("s3.a.one", Level.S3_BASIC, Status.PASSED)]


def test_every_check_passed_means_the_level_passed() -> None:
    results = [*BASIC_OK, result("s3.b.two", Level.S3_FULL, Status.PASSED)]
    verdict = compute_verdict(Level.S3_FULL, results)
    assert verdict.passed and verdict.certified == Level.S3_FULL
    assert verdict.reasons == ()


def test_a_skipped_check_is_never_counted_as_passed() -> None:
    results = [*BASIC_OK, result("s3.iso.read", Level.S3_FULL, Status.SKIPPED, "needs alt")]
    verdict = compute_verdict(Level.S3_FULL, results)
    assert not verdict.passed
    assert verdict.certified == Level.S3_BASIC
    full = verdict.to_dict()["levels"]["s3-full"]
    assert full == {
        "passed": False,
        "checks": 2,
        "checks_passed": 1,
        "checks_failed": 0,
        "checks_errored": 0,
        "checks_skipped": 1,
    }
    assert any("skipped" in reason and "needs alt" in reason for reason in verdict.reasons)


@pytest.mark.parametrize("status", [Status.FAILED, Status.ERROR, Status.SKIPPED])
def test_any_basic_check_not_passed_fails_every_level(status: Status) -> None:
    results = [
        result("s3.a.one", Level.S3_BASIC, status),
        result("s3.b.two", Level.S3_FULL, Status.PASSED),
    ]
    verdict = compute_verdict(Level.S3_FULL, results)
    assert not verdict.passed
    assert verdict.certified is None


def test_a_partial_run_certifies_nothing() -> None:
    verdict = compute_verdict(Level.S3_BASIC, BASIC_OK, partial=True)
    assert not verdict.passed and verdict.certified is None and verdict.partial


def test_a_level_without_checks_is_not_passed() -> None:
    assert not compute_verdict(Level.S3_BASIC, []).passed


def test_canonical_json_is_sorted_compact_utf8_and_refuses_floats() -> None:
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )
    with pytest.raises(ValueError, match="floats"):
        canonical_json({"duration": 1.5})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=25,
)


@given(json_values)
def test_canonical_json_survives_a_round_trip(value: Any) -> None:
    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once


def test_report_document_carries_everything_and_its_verdict_recomputes() -> None:
    start = dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    report = Report(
        core_version="1.0.0",
        silverlining_version="0.1.0",
        level=Level.S3_FULL,
        endpoint="http://127.0.0.1:9000",
        region="us-east-1",
        addressing="path",
        run_id="abcd1234",
        started_at=start,
        finished_at=start + dt.timedelta(seconds=3),
        results=(*BASIC_OK, result("s3.b.two", Level.S3_FULL, Status.FAILED)),
    )
    document = json.loads(json.dumps(report.to_dict()))
    assert document["started_at"] == "2025-01-02T03:04:05.678Z"
    assert document["finished_at"] == "2025-01-02T03:04:08.678Z"
    assert document["duration_ms"] == 3000
    assert document["checks"][1]["evidence"] == {
        "request": "GET /b/k",
        "expected": "HTTP 200",
        "got": "HTTP 500",
    }
    assert document["results_sha256"] == results_hash(document["checks"])
    assert verdict_from_document(document).to_dict() == document["verdict"]
    assert document["verdict"]["passed"] is False
    assert document["verdict"]["certified"] == "s3-basic"
    assert CheckResult.from_dict(document["checks"][1]) == report.results[1]
