"""How the runner judges a check: outcomes, evidence and cleanup, whatever the check does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from silverlining.core.context import CheckContext, Session, Target, remove_bucket
from silverlining.core.evidence import CheckSkipped
from silverlining.core.rawhttp import Credentials
from silverlining.core.registry import Check, CheckFunc, Level
from silverlining.core.report import Status
from silverlining.core.runner import run, run_check

from .conftest import Endpoint


@pytest.fixture
def session(moto_endpoint: Endpoint) -> Iterator[Session]:
    target = Target(
        moto_endpoint.url, Credentials(moto_endpoint.access_key, moto_endpoint.secret_key)
    )
    active = Session(target)
    active.preflight()
    yield active
    active.close()


def make(func: CheckFunc, *, needs_alt: bool = False) -> Check:
    return Check("s3.test.probe", Level.S3_BASIC, "Probes the runner.", func, needs_alt)


def buckets_of(session: Session) -> list[str]:
    names = [b["Name"] for b in session.s3.list_buckets()["Buckets"]]
    return [n for n in names if session.run_id in n]


def test_a_failing_check_still_deletes_its_buckets_and_objects(session: Session) -> None:
    def fails_midway(ctx: CheckContext) -> None:
        bucket = ctx.new_bucket()
        ctx.put(bucket, "a/b/c.txt", b"left behind?")
        ctx.s3.create_multipart_upload(Bucket=bucket, Key="unfinished")
        ctx.expect_equal(1, 2, "one")

    result = run_check(session, make(fails_midway))
    assert result.status == Status.FAILED
    assert result.evidence is not None
    assert result.evidence.expected == "one = 2" and result.evidence.got == "one = 1"
    assert result.evidence.request.startswith("POST /core-")  # the last request sent
    assert result.notes == ()
    assert buckets_of(session) == []


def test_a_provider_error_is_a_failure_naming_the_request(session: Session) -> None:
    def reads_missing(ctx: CheckContext) -> None:
        ctx.get(ctx.new_bucket(), "absent")

    result = run_check(session, make(reads_missing))
    assert result.status == Status.FAILED
    assert result.evidence is not None
    assert result.evidence.expected == "the request to succeed"
    assert result.evidence.got.startswith("HTTP 404 NoSuchKey")
    assert result.evidence.request.startswith("GET /core-") and "/absent" in result.evidence.request


def test_a_broken_check_is_an_error_not_a_failure(session: Session) -> None:
    def broken(ctx: CheckContext) -> None:
        ctx.new_bucket()
        raise ZeroDivisionError("core bug")

    result = run_check(session, make(broken))
    assert result.status == Status.ERROR
    assert result.evidence is not None and "ZeroDivisionError: core bug" in result.evidence.got
    assert buckets_of(session) == []


def test_a_request_core_cannot_even_build_is_an_error(session: Session) -> None:
    def bad_parameters(ctx: CheckContext) -> None:
        ctx.s3.get_object(Bucket=ctx.new_bucket())  # no Key

    result = run_check(session, make(bad_parameters))
    assert result.status == Status.ERROR
    assert result.evidence is not None and result.evidence.request == "(not sent)"
    assert "ParamValidationError" in result.evidence.got


def test_skips_are_reported_with_their_reason(session: Session) -> None:
    def skips(ctx: CheckContext) -> None:
        raise CheckSkipped("not today")

    assert run_check(session, make(skips)).reason == "not today"
    needs_alt = run_check(session, make(lambda ctx: None, needs_alt=True))
    assert needs_alt.status == Status.SKIPPED
    assert needs_alt.reason is not None and "alternate account" in needs_alt.reason


def test_cleanup_problems_become_notes(session: Session) -> None:
    def defers_a_failure(ctx: CheckContext) -> None:
        ctx.defer("delete a bucket that is not there", lambda: 1 / 0)

    result = run_check(session, make(defers_a_failure))
    assert result.status == Status.PASSED
    assert result.notes == (
        "cleanup: could not delete a bucket that is not there: ZeroDivisionError: division by zero",
    )


def test_results_come_back_in_the_order_asked_whatever_the_weights(session: Session) -> None:
    checks = [
        Check(f"s3.test.c{i}", Level.S3_BASIC, "Order.", lambda ctx: None, weight=i)
        for i in range(6)
    ]
    results = run(session, checks, workers=3)
    assert [r.id for r in results] == [c.id for c in checks]
    assert {r.status for r in results} == {Status.PASSED}


def test_sweep_removes_what_checks_left(session: Session) -> None:
    name = session.bucket_name("left-behind")
    session.s3.create_bucket(Bucket=name)
    session.s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert session.sweep() == []
    assert buckets_of(session) == []
    remove_bucket(session.s3, name)  # already gone: no error
