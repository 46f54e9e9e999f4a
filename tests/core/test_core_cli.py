"""The `core` command line: list, usage errors, and an endpoint that is not there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from silverlining.core import CORE_VERSION
from silverlining.core.cli import core
from silverlining.core.registry import LEVELS, Level, load_checks

from .conftest import Endpoint, free_port, run_core


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(core, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_core_is_a_click_group_with_the_four_commands() -> None:
    import click

    assert isinstance(core, click.Group)
    assert set(core.commands) == {"check", "keygen", "verify", "list"}


def test_list_prints_every_check_with_its_level_and_statement() -> None:
    code, output = invoke("list")
    assert code == 0
    flat = " ".join(output.split())
    registry = load_checks()
    for item in registry.all():
        assert item.id in flat
    for level in LEVELS:
        assert f"{level}: {len(registry.for_level(level))} checks" in flat


def test_list_json_is_complete() -> None:
    code, output = invoke("list", "--json")
    assert code == 0
    document = json.loads(output)
    assert document["core_version"] == CORE_VERSION
    assert [c["id"] for c in document["checks"]] == [c.id for c in load_checks().all()]
    first = document["checks"][0]
    assert set(first) == {"id", "level", "statement", "needs_alternate_account"}
    code, output = invoke("list", "--json", "--level", "s3-basic")
    assert {c["level"] for c in json.loads(output)["checks"]} == {str(Level.S3_BASIC)}


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "silverlining.core", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"Silver Lining Core {CORE_VERSION}"


BASE = ["check", "--access-key", "k", "--secret-key", "s"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*BASE, "--endpoint", "ftp://example.com"], "http:// or https://"),
        ([*BASE, "--endpoint", "http://example.com/some/path"], "must not have a path"),
        ([*BASE, "--endpoint", "http://h", "--alt-access-key", "x"], "give both"),
        (
            [*BASE, "--endpoint", "http://h", "--alt-access-key", "k", "--alt-secret-key", "z"],
            "another account",
        ),
        ([*BASE, "--endpoint", "http://h", "--only", "s3.nothing.*"], "no s3-full check matches"),
        ([*BASE, "--endpoint", "http://h", "--sign-with", "key.pem"], "needs --json"),
        (
            [*BASE, "--endpoint", "http://h", "--json", "/nonexistent-dir/r.json"],
            "is not a directory",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    code, output = invoke(*args)
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_unreadable_signing_key_exits_2(tmp_path: Path) -> None:
    code, output = invoke(
        *BASE, "--endpoint", "http://h", "--json", str(tmp_path / "r.json"),
        "--sign-with", str(tmp_path / "missing.pem"),
    )  # fmt: skip
    assert code == 2
    assert "cannot read key file" in output


def test_unreachable_endpoint_exits_2_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    report = tmp_path / "r.json"
    out = subprocess.run(
        [
            sys.executable, "-m", "silverlining.core", "check",
            "--endpoint", f"http://127.0.0.1:{port}",
            "--access-key", "k", "--secret-key", "s", "--json", str(report),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    error_lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert error_lines == [error_lines[0]]
    assert error_lines[0].startswith(f"error: cannot reach http://127.0.0.1:{port}")
    assert "Traceback" not in out.stdout + out.stderr
    assert not report.exists()


def test_json_to_stdout_keeps_the_human_output_on_stderr(moto_endpoint: Endpoint) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "silverlining.core",
            *moto_endpoint.check_args(alt=False), "--only", "s3.object.put-get", "--json", "-",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert [c["id"] for c in document["checks"]] == ["s3.object.put-get"]
    assert document["selection"] == ["s3.object.put-get"]
    assert document["verdict"]["partial"] is True
    assert document["verdict"]["passed"] is False
    assert "PASS s3.object.put-get" in out.stderr


def test_human_output_has_results_table_summary_and_verdict(
    moto_endpoint: Endpoint, tmp_path: Path
) -> None:
    run = run_core(
        [*moto_endpoint.check_args(alt=False), "--only", "s3.auth.*"], tmp_path / "r.json"
    )
    flat = " ".join(run.output.split())
    assert "Core results" in flat
    assert "PASS s3.auth.sigv4-header" in flat
    assert "FAIL s3.auth.wrong-secret" in flat
    assert "Evidence" in flat
    assert "expected a GET signed with a wrong secret: HTTP 403 SignatureDoesNotMatch" in flat
    assert "partial run (--only)" in flat
    assert "selected 3/12 passed NOT ALL PASSED" in flat
    assert "Verdict: partial run, no level certified" in flat
    assert run.exit_code == 1
