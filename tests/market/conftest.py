"""A test federation: real provider nodes (separate processes and data dirs, their own
prices and regions) and a real market process, driven through the `silverlining market` CLI
and the market's HTTP API.

The nodes, cheapest first for storage, and for egress:

=======  ============  ============  ===========  ==========
node     region        jurisdiction  per GB-month per GB out
=======  ============  ============  ===========  ==========
gamma    us-east-1     US            0.015        0.050
alpha    eu-central-1  DE            0.020        0.090
beta     eu-west-1     FR            0.030        0.010
=======  ============  ============  ===========  ==========

gamma's broker and S3 endpoint sit behind a fault proxy (tests/core/faultproxy.py), which the
tests switch to break its provisioning or its S3 behaviour at will.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.conftest import BIN, NodeProcess, free_port
from tests.core.faultproxy import FaultProxy

BROKER_USER = "market"
BROKER_PASSWORD = "market-test-broker-password-0123456789"

NODE_CONFIG = """
[node]
public_endpoint = "{endpoint}"
jurisdiction = "{jurisdiction}"
core_level_claimed = "s3-full"

[[plans]]
id = "{name}-standard"
name = "standard"
description = "Hot object storage at {name}"
currency = "EUR"
price_gb_month = "{gb_month}"
price_egress_gb = "{egress_gb}"
price_write_1k = "{write_1k}"
price_read_1k = "{read_1k}"
"""


@dataclass
class Provider:
    name: str
    node: NodeProcess
    region: str
    jurisdiction: str
    gb_month: str
    egress_gb: str
    proxy: FaultProxy | None = None

    @property
    def broker_url(self) -> str:
        return self.proxy.endpoint if self.proxy else self.node.endpoint


def start_provider(base: Path, name: str, region: str, jurisdiction: str, gb_month: str,
                   egress_gb: str, *, proxied: bool = False, write_1k: str = "0.0050",
                   read_1k: str = "0.0004", extra_args: tuple[str, ...] = ()) -> Provider:
    data_dir = base / name
    data_dir.mkdir(parents=True)
    node = NodeProcess(data_dir)
    proxy = FaultProxy(node.endpoint).__enter__() if proxied else None
    public = proxy.endpoint if proxy else node.endpoint
    config = base / f"{name}.toml"
    config.write_text(NODE_CONFIG.format(endpoint=public, jurisdiction=jurisdiction, name=name,
                                         gb_month=gb_month, egress_gb=egress_gb,
                                         write_1k=write_1k, read_1k=read_1k))
    node.extra_args = ("--config", str(config), "--region", region, *extra_args)
    subprocess.run([str(BIN), "broker", "set-credentials", BROKER_USER, "--password-stdin",
                    "--data-dir", str(data_dir)], input=BROKER_PASSWORD + "\n", text=True,
                   check=True, capture_output=True)
    node.start()
    return Provider(name, node, region, jurisdiction, gb_month, egress_gb, proxy)


def stop_provider(p: Provider) -> None:
    p.node.stop()
    if p.proxy is not None:
        p.proxy.__exit__(None, None, None)


@dataclass
class Market:
    data_dir: Path
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    admin_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [str(BIN), "market", "serve", "--port", str(self.port), "--data-dir",
             str(self.data_dir), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"market exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("market did not start in 30 s")
        found = re.search(r"^\s+(slm_\S+)$", self.log_path.read_text(), re.MULTILINE)
        if found and not self.admin_token:
            self.admin_token = found.group(1)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def run(self, *args: str, token: str | None = None, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`silverlining market ARGS` against this market."""
        env = {**os.environ, "SILVERLINING_MARKET_URL": self.url,
               "SILVERLINING_MARKET_TOKEN": token or self.admin_token, "COLUMNS": "250"}
        out = subprocess.run([str(BIN), "market", *args], capture_output=True, text=True,
                             env=env, input=input, timeout=600)
        if check and out.returncode != 0:
            raise AssertionError(f"market {' '.join(args)} exited {out.returncode}:\n"
                                 f"{out.stdout}\n{out.stderr}")
        return out

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.run(*args, "--json", token=token).stdout)

    def api(self, method: str, path: str, *, token: str | None = None,
            **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(method, self.url + "/api/v1" + path, headers=headers,
                             timeout=600, **kwargs)

    def add_provider(self, p: Provider, *, check: bool = True,
                     token: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("providers", "add", p.name, "--broker-url", p.broker_url,
                        "--broker-user", BROKER_USER, "--broker-password-stdin",
                        input=BROKER_PASSWORD + "\n", check=check, token=token)

    def new_buyer(self, name: str) -> str:
        token: str = self.json("accounts", "create", name, "--role", "buyer")["token"]
        return token


def eventually(probe: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``probe`` until it returns something true, or fail saying ``what`` was awaited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


def s3_for(sub: dict[str, Any]) -> Any:
    """A boto3 client from a subscription's credentials, as a buyer would make one."""
    return boto3.client(
        "s3", endpoint_url=sub["endpoint"], region_name=sub["region"],
        aws_access_key_id=sub["access_key_id"],
        aws_secret_access_key=sub["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Provider]]:
    base = tmp_path_factory.mktemp("federation")
    providers: dict[str, Provider] = {}
    try:
        for spec in (("alpha", "eu-central-1", "DE", "0.020", "0.090", False),
                     ("beta", "eu-west-1", "FR", "0.030", "0.010", False),
                     ("gamma", "us-east-1", "US", "0.015", "0.050", True)):
            providers[spec[0]] = start_provider(base, *spec[:5], proxied=spec[5])
        yield providers
    finally:
        for p in providers.values():
            stop_provider(p)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    m = Market(tmp_path_factory.mktemp("market") / "data", extra_args=("--broker-timeout", "10"))
    m.start()
    try:
        yield m
    finally:
        m.stop()
