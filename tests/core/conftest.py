"""Fixtures for Core's tests: moto's S3 server as a peer to certify, and running Core."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from silverlining.core.cli import core

MOTO_ACCESS_KEY = "AKIACOREPRIMARY"
MOTO_SECRET_KEY = "core-primary-secret"
MOTO_ALT_ACCESS_KEY = "AKIACOREALTERNATE"
MOTO_ALT_SECRET_KEY = "core-alternate-secret"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: runs Core against a real Silver Lining node (the `node` fixture)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Endpoint:
    """An S3 endpoint and two accounts' credentials on it."""

    url: str
    access_key: str
    secret_key: str
    alt_access_key: str
    alt_secret_key: str
    region: str = "us-east-1"

    def check_args(self, *, alt: bool = True) -> list[str]:
        args = [
            "check",
            "--endpoint", self.url,
            "--access-key", self.access_key,
            "--secret-key", self.secret_key,
            "--region", self.region,
        ]  # fmt: skip
        if alt:
            args += ["--alt-access-key", self.alt_access_key]
            args += ["--alt-secret-key", self.alt_secret_key]
        return args


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[Endpoint]:
    """moto's S3 server in a child process on a free port, stopped by its pid afterwards."""
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with status {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start within 30 s") from None
                time.sleep(0.1)
        yield Endpoint(
            f"http://127.0.0.1:{port}",
            MOTO_ACCESS_KEY,
            MOTO_SECRET_KEY,
            MOTO_ALT_ACCESS_KEY,
            MOTO_ALT_SECRET_KEY,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Run:
    """One `core check` run through click's runner: its exit status, output and report."""

    exit_code: int
    output: str
    report: dict[str, Any]
    seconds: float

    def status(self, check_id: str) -> str:
        return str(self.result(check_id)["status"])

    def result(self, check_id: str) -> dict[str, Any]:
        for item in self.report["checks"]:
            if item["id"] == check_id:
                return dict(item)
        raise KeyError(check_id)

    def ids_with(self, status: str) -> set[str]:
        return {c["id"] for c in self.report["checks"] if c["status"] == status}


def run_core(args: list[str], report_path: Path) -> Run:
    """Run `core check ARGS --json REPORT_PATH` in this process (so warnings are errors)."""
    started = time.monotonic()
    result = CliRunner().invoke(core, [*args, "--json", str(report_path)], catch_exceptions=False)
    seconds = time.monotonic() - started
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return Run(result.exit_code, result.output, report, seconds)


@pytest.fixture(scope="session")
def moto_full_run(moto_endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Core's s3-full level against moto, with an alternate account, once per session."""
    path = tmp_path_factory.mktemp("moto-full") / "report.json"
    return run_core([*moto_endpoint.check_args(), "--level", "s3-full"], path)
