"""Core against moto's S3 server: it runs to the end and catches what moto gets wrong.

moto is a faithful-looking peer for the happy paths, so it passes s3-basic; but it verifies no
signatures, keeps every access key in one account, and skips several integrity and error
rules. Each failure below is asserted by id with the evidence that shows why, so a change in
Core that stops catching one of them fails this test.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from silverlining.core.registry import Level, load_checks

from .conftest import Endpoint, Run, run_core

#: check id -> (evidence field, text it must contain): what moto 5 really gets wrong.
MOTO_FAILURES: dict[str, tuple[str, str]] = {
    # Accepts a bucket name S3 forbids (upper case).
    "s3.bucket.invalid-name": ("got", "success"),
    # NextMarker is an opaque token instead of the last key listed.
    "s3.list.v1-marker": ("expected", "NextMarker with a delimiter = 'key-002'"),
    # UploadPart to an aborted upload crashes instead of answering NoSuchUpload.
    "s3.multipart.abort": ("got", "HTTP 500"),
    # Completes an upload whose parts are listed out of order.
    "s3.multipart.invalid-part": ("expected", "InvalidPartOrder"),
    # Quiet mode still reports every deleted key.
    "s3.object.delete-multiple-quiet": ("got", "'Key': 'quiet/0'"),
    # Sends x-amzn-requestid, not S3's x-amz-request-id.
    "s3.error.document": ("got", "x-amzn-requestid"),
    # Lets anonymous requests list buckets and write objects.
    "s3.auth.anonymous-denied": ("got", "anonymous PUT"),
    # Verifies no signature at all.
    "s3.auth.tampered-signature": ("got", "HTTP 200"),
    "s3.auth.tampered-request": ("got", "HTTP 200"),
    "s3.auth.wrong-secret": ("got", "HTTP 200"),
    "s3.auth.unknown-access-key": ("got", "HTTP 200"),
    "s3.auth.skewed-clock": ("got", "HTTP 200"),
    "s3.auth.payload-hash-mismatch": ("got", "HTTP 200"),
    "s3.auth.presigned-expiry": ("got", "HTTP 200"),
    "s3.auth.presigned-tampered": ("got", "HTTP 200"),
    "s3.streaming.bad-chunk-signature": ("got", "HTTP 200"),
    # Evaluates If-Unmodified-Since even when If-Match holds (RFC 9110 precedence).
    "s3.conditional.precedence": ("got", "HTTP 412 PreconditionFailed"),
    # Ignores x-amz-copy-source-if-* conditions.
    "s3.conditional.copy-source-if": ("got", "success"),
    # Checks neither Content-MD5 nor x-amz-checksum-* against the body.
    "s3.checksum.content-md5": ("got", "success"),
    "s3.checksum.mismatch": ("got", "success"),
    "s3.streaming.trailer-mismatch": ("got", "HTTP 200"),
    # Does not return the checksum a PUT carried, nor keep one sent as a trailer.
    "s3.checksum.algorithms": ("got", "ChecksumCRC32 returned by PutObject = None"),
    "s3.streaming.unsigned-trailer": ("got", "from the trailer = None"),
    # Every access key is the same account: no tenant isolation.
    "s3.isolation.read": ("got", "success"),
    "s3.isolation.list": ("got", "success"),
    "s3.isolation.write": ("got", "success"),
    "s3.isolation.delete": ("got", "success"),
    "s3.isolation.bucket-name": ("got", "success"),
}


def test_core_runs_to_the_end_against_moto(moto_full_run: Run) -> None:
    registry = load_checks()
    report = moto_full_run.report
    assert moto_full_run.exit_code == 1, moto_full_run.output
    assert [c["id"] for c in report["checks"]] == [c.id for c in registry.for_level(Level.S3_FULL)]
    assert moto_full_run.ids_with("error") == set(), "a check broke instead of judging moto"
    assert moto_full_run.ids_with("skipped") == set()
    assert report["leftover_buckets"] == []


def test_moto_passes_s3_basic(moto_full_run: Run) -> None:
    verdict = moto_full_run.report["verdict"]
    assert verdict["levels"]["s3-basic"]["passed"] is True
    assert verdict["certified"] == "s3-basic"
    assert verdict["passed"] is False
    assert "Verdict: s3-full NOT PASSED (highest level passed: s3-basic)" in " ".join(
        moto_full_run.output.split()
    )


def test_core_catches_exactly_what_moto_gets_wrong(moto_full_run: Run) -> None:
    assert moto_full_run.ids_with("failed") == set(MOTO_FAILURES)


@pytest.mark.parametrize("check_id", sorted(MOTO_FAILURES))
def test_each_moto_failure_has_evidence(moto_full_run: Run, check_id: str) -> None:
    result = moto_full_run.result(check_id)
    evidence = result["evidence"]
    field, text = MOTO_FAILURES[check_id]
    assert text in evidence[field], evidence
    assert evidence["request"] and evidence["request"] != "(no request sent yet)"
    assert result["reason"].startswith("expected ")


def test_tampered_signature_evidence_names_the_request(moto_full_run: Run) -> None:
    evidence = moto_full_run.result("s3.auth.tampered-signature")["evidence"]
    assert evidence["request"].startswith("GET /core-")
    assert evidence["expected"] == "a GET with an altered signature: HTTP 403 SignatureDoesNotMatch"
    assert evidence["got"] == "HTTP 200 (b'target')"


def test_full_run_against_moto_is_quick(moto_full_run: Run) -> None:
    assert moto_full_run.seconds < 60
    assert moto_full_run.report["duration_ms"] < 60_000


def test_every_core_bucket_is_cleaned_up(moto_endpoint: Endpoint, moto_full_run: Run) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint.url,
        aws_access_key_id=moto_endpoint.access_key,
        aws_secret_access_key=moto_endpoint.secret_key,
        region_name="us-east-1",
    )
    try:
        names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    finally:
        client.close()
    run_id = moto_full_run.report["run_id"]
    assert [n for n in names if run_id in n] == []


def test_without_alternate_account_isolation_is_skipped_never_passed(
    moto_endpoint: Endpoint, tmp_path: Path
) -> None:
    run = run_core(
        [*moto_endpoint.check_args(alt=False), "--only", "s3.isolation.*"], tmp_path / "r.json"
    )
    isolation = {c.id for c in load_checks().all() if c.needs_alt}
    assert run.ids_with("skipped") == isolation
    assert run.ids_with("passed") == set()
    assert run.exit_code == 1
    for check_id in isolation:
        assert "alternate account" in run.result(check_id)["reason"]
    assert "No alternate account given" in " ".join(run.output.split())


def test_s3_full_cannot_be_claimed_without_alternate_account(
    moto_endpoint: Endpoint, tmp_path: Path
) -> None:
    run = run_core(
        [*moto_endpoint.check_args(alt=False), "--level", "s3-full"], tmp_path / "r.json"
    )
    verdict = run.report["verdict"]
    assert verdict["passed"] is False
    assert verdict["levels"]["s3-full"]["checks_skipped"] == 5
    assert any("a skipped check is not a passed one" in r for r in verdict["reasons"])
    assert run.exit_code == 1


def test_s3_basic_level_passes_on_moto_with_exit_zero(
    moto_endpoint: Endpoint, tmp_path: Path
) -> None:
    run = run_core(
        [*moto_endpoint.check_args(alt=False), "--level", "s3-basic"], tmp_path / "r.json"
    )
    assert run.exit_code == 0, run.output
    assert run.report["verdict"]["passed"] is True
    assert run.report["level"] == "s3-basic"
    assert {c["level"] for c in run.report["checks"]} == {"s3-basic"}
