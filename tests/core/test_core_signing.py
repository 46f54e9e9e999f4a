"""keygen, signed reports and verify: a report verifies; an edited or re-signed one does not."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from silverlining.core.cli import core
from silverlining.core.registry import Level
from silverlining.core.report import CheckResult, Report, Status
from silverlining.core.signing import (
    KeyFileError,
    NotAReport,
    fingerprint,
    generate_key,
    load_private_key,
    sign_document,
    verify_document,
)

from .conftest import Endpoint, run_core


def sample_document() -> dict[str, Any]:
    import datetime as dt

    now = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
    results = (
        CheckResult("s3.object.put-get", Level.S3_BASIC, "Round trip.", Status.PASSED, 5),
        CheckResult("s3.auth.skewed-clock", Level.S3_FULL, "Skew refused.", Status.PASSED, 7),
    )
    report = Report("1.0.0", "0.1.0", Level.S3_FULL, "http://p:9000", "us-east-1", "path",
                    "run1", now, now, results)  # fmt: skip
    return report.to_dict()


def invoke(*args: str) -> Any:
    return CliRunner().invoke(core, list(args), catch_exceptions=False)


def test_keygen_writes_an_owner_only_pem_and_prints_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "signer.pem"
    result = invoke("keygen", str(path))
    assert result.exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    key = load_private_key(path)
    assert f"fingerprint: {fingerprint(key.public_key())}" in result.output
    assert "public key:  " in result.output


def test_keygen_never_replaces_a_key_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "signer.pem"
    invoke("keygen", str(path))
    before = path.read_bytes()
    refused = invoke("keygen", str(path))
    assert refused.exit_code == 2
    assert "already exists" in refused.output
    assert path.read_bytes() == before
    path.chmod(0o644)
    assert invoke("keygen", "--force", str(path)).exit_code == 0
    assert path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_loading_a_non_key_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-key.pem"
    path.write_text("hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_private_key(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


def test_signed_document_verifies_and_names_its_signer() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_document(sample_document(), key)
    result = verify_document(signed)
    assert result.valid, result.problems
    assert result.fingerprint == fingerprint(key.public_key())
    assert verify_document(signed, expected_signer=key.public_key()).valid


def test_editing_one_result_breaks_the_hash_and_the_signature() -> None:
    signed = sign_document(sample_document(), Ed25519PrivateKey.generate())
    edited = copy.deepcopy(signed)
    edited["checks"][1]["status"] = "failed"
    problems = verify_document(edited).problems
    assert "the results do not match their hash (results_sha256)" in problems
    assert any("signature does not match" in p for p in problems)


def test_editing_the_verdict_alone_is_caught() -> None:
    document = sample_document()
    document["checks"][1]["status"] = "skipped"
    document["checks"][1]["reason"] = "needs alt"
    signed = sign_document(document, Ed25519PrivateKey.generate())
    forged = copy.deepcopy(signed)
    forged["verdict"]["passed"] = True
    problems = verify_document(forged).problems
    assert "the verdict does not follow from the results" in problems


def test_a_report_re_signed_by_another_key_fails_against_the_expected_signer() -> None:
    honest = Ed25519PrivateKey.generate()
    forger = Ed25519PrivateKey.generate()
    signed = sign_document(sample_document(), honest)
    tampered = copy.deepcopy(signed)
    tampered["checks"][0]["duration_ms"] = 1
    resigned = sign_document(tampered, forger)
    assert verify_document(resigned).valid  # self-consistent, but...
    result = verify_document(resigned, expected_signer=honest.public_key())
    assert not result.valid
    assert any("not by the expected signer" in p for p in result.problems)
    by_fingerprint = verify_document(resigned, expected_signer=fingerprint(honest.public_key()))
    assert not by_fingerprint.valid


def test_a_signature_from_another_key_under_the_original_signer_fails() -> None:
    honest = Ed25519PrivateKey.generate()
    signed = sign_document(sample_document(), honest)
    other = sign_document(sample_document(), Ed25519PrivateKey.generate())
    spliced = dict(signed, signature=other["signature"])
    assert not verify_document(spliced).valid


def test_unsigned_and_foreign_documents() -> None:
    result = verify_document(sample_document())
    assert result.problems == ["the report is not signed (no signer or signature)"]
    with pytest.raises(NotAReport):
        verify_document({"hello": "world"})
    with pytest.raises(NotAReport):
        verify_document([1, 2])


def _write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def test_verify_command_exit_statuses(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_document(sample_document(), key)
    good = _write(tmp_path / "good.json", signed)
    result = invoke("verify", good)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "VALID report" in text
    assert f"signed by {fingerprint(key.public_key())}" in text
    for fact in ("endpoint http://p:9000", "core version 1.0.0", "level s3-full", "verdict PASSED"):
        assert fact in text
    assert "signed at 2" in text

    edited = copy.deepcopy(signed)
    edited["checks"][0]["status"] = "failed"
    result = invoke("verify", _write(tmp_path / "edited.json", edited))
    assert result.exit_code == 1
    assert "INVALID report" in result.output

    other = Ed25519PrivateKey.generate()
    result = invoke("verify", good, "--signer", fingerprint(other.public_key()))
    assert result.exit_code == 1
    assert "not by the expected signer" in " ".join(result.output.split())

    assert invoke("verify", str(tmp_path / "missing.json")).exit_code == 2
    (tmp_path / "junk.json").write_text("{not json")
    junk = invoke("verify", str(tmp_path / "junk.json"))
    assert junk.exit_code == 2 and "is not JSON" in junk.output
    foreign = invoke("verify", _write(tmp_path / "foreign.json", {"a": 1}))
    assert foreign.exit_code == 2 and "not a Silver Lining Core report" in foreign.output
    assert invoke("verify", good, "--signer", "not-a-key").exit_code == 2


def test_signed_report_from_a_real_run_round_trips(moto_endpoint: Endpoint, tmp_path: Path) -> None:
    key_path = tmp_path / "market.pem"
    keygen = invoke("keygen", str(key_path))
    public_key = keygen.output.split("public key:")[1].split()[0]
    report_path = tmp_path / "report.json"
    run = run_core(
        [*moto_endpoint.check_args(alt=False), "--level", "s3-basic", "--sign-with", str(key_path)],
        report_path,
    )
    assert run.exit_code == 0, run.output
    assert run.report["signer"]["public_key"] == public_key
    assert invoke("verify", str(report_path), "--signer", public_key).exit_code == 0

    document = json.loads(report_path.read_text())
    document["checks"][3]["status"] = "failed"  # one result edited
    edited = _write(tmp_path / "edited.json", document)
    assert invoke("verify", edited).exit_code == 1

    other = tmp_path / "other.pem"
    invoke("keygen", str(other))
    resigned = sign_document(document, generate_key(tmp_path / "third.pem"))
    resigned_path = _write(tmp_path / "resigned.json", resigned)
    assert invoke("verify", resigned_path, "--signer", public_key).exit_code == 1
    private = invoke("verify", resigned_path, "--signer", str(key_path))
    assert private.exit_code == 2 and "is a private key" in private.output
