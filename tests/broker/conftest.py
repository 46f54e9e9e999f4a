"""Fixtures for the broker and metering tests: a real node started with a configuration file
(plans, prices) and a short metering period, broker credentials set through the CLI, and a
small OSB client over http.client."""

from __future__ import annotations

import base64
import http.client
import json
import sqlite3
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import BIN, NodeProcess

USER = "market"
PASSWORD = "broker-test-password-0123456789"
STANDARD = "sl-test-standard"
SMALL = "sl-test-small"
TINY = "sl-test-tiny"
#: Deprovisions of tenants above this many objects may run in the background.
ASYNC_OBJECTS = 5

CONFIG = f"""
[node]
public_endpoint = "{{endpoint}}"
jurisdiction = "DE"
core_level_claimed = "s3-full"

[broker]
async_deprovision_objects = {ASYNC_OBJECTS}

[[plans]]
id = "{STANDARD}"
name = "standard"
description = "Hot object storage"
currency = "EUR"
price_gb_month = "0.020"
price_egress_gb = "0.010"
price_write_1k = "0.0050"
price_read_1k = "0.00040"

[[plans]]
id = "{SMALL}"
name = "small"
description = "Small tenant"
currency = "EUR"
price_gb_month = "0.030"
price_egress_gb = "0.010"
price_write_1k = "0.0050"
price_read_1k = "0.00040"
quota_bytes = 2000
quota_objects = 3

[[plans]]
id = "{TINY}"
name = "tiny"
description = "Tiny tenant"
currency = "EUR"
price_gb_month = "0"
price_egress_gb = "0"
price_write_1k = "0"
price_read_1k = "0"
quota_bytes = 1000
"""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class OSB:
    """An OSB platform's view of a broker: raw HTTP, so every status is visible."""

    def __init__(self, endpoint: str, user: str = USER, password: str = PASSWORD) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.user = user
        self.password = password
        self._service_id: str | None = None

    def auth_header(self, user: str | None = None, password: str | None = None) -> str:
        token = f"{user or self.user}:{password or self.password}".encode()
        return "Basic " + base64.b64encode(token).decode()

    def request(self, method: str, path: str, body: Any = None, *,
                query: dict[str, str] | None = None, auth: str | bool | None = True,
                version: str | None = "2.17", headers: dict[str, str] | None = None,
                timeout: float = 30) -> Response:
        hdrs = dict(headers or {})
        if auth is True:
            hdrs["Authorization"] = self.auth_header()
        elif isinstance(auth, str):
            hdrs["Authorization"] = auth
        if version is not None:
            hdrs["X-Broker-API-Version"] = version
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                            resp.read())
        finally:
            conn.close()

    # conveniences ------------------------------------------------------------------------
    @property
    def service_id(self) -> str:
        if self._service_id is None:
            catalog = self.request("GET", "/v2/catalog").json()
            self._service_id = catalog["services"][0]["id"]
        return self._service_id

    def provision(self, instance_id: str, plan_id: str = STANDARD, **extra: Any) -> Response:
        body = {"service_id": self.service_id, "plan_id": plan_id,
                "organization_guid": "org", "space_guid": "space", **extra}
        return self.request("PUT", f"/v2/service_instances/{instance_id}", body)

    def bind(self, instance_id: str, binding_id: str, plan_id: str = STANDARD,
             **extra: Any) -> Response:
        body = {"service_id": self.service_id, "plan_id": plan_id, **extra}
        return self.request(
            "PUT", f"/v2/service_instances/{instance_id}/service_bindings/{binding_id}", body)

    def unbind(self, instance_id: str, binding_id: str, plan_id: str = STANDARD) -> Response:
        return self.request(
            "DELETE", f"/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
            query={"service_id": self.service_id, "plan_id": plan_id})

    def deprovision(self, instance_id: str, plan_id: str = STANDARD, *,
                    accepts_incomplete: bool = False) -> Response:
        query = {"service_id": self.service_id, "plan_id": plan_id}
        if accepts_incomplete:
            query["accepts_incomplete"] = "true"
        return self.request("DELETE", f"/v2/service_instances/{instance_id}", query=query)

    def last_operation(self, instance_id: str, operation: str | None = None) -> Response:
        query = {"operation": operation} if operation else None
        return self.request("GET", f"/v2/service_instances/{instance_id}/last_operation",
                            query=query)

    def usage(self, **query: str) -> Response:
        return self.request("GET", "/federation/usage", query=query or None, version=None)


def s3_client(credentials: dict[str, str]) -> Any:
    """A boto3 client from a binding's credentials, exactly as a buyer would build it."""
    return boto3.client(
        "s3", endpoint_url=credentials["endpoint"], region_name=credentials["region"],
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


class BrokerNode(NodeProcess):
    """A node serving with a configuration file, a metering period and broker credentials."""

    def __init__(self, data_dir: Path, *, period: int = 1, config: str = CONFIG,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir)
        self.period = period
        self.config_path = data_dir.parent / f"{data_dir.name}.toml"
        self.config_path.write_text(config.replace("{endpoint}", self.endpoint))
        self.extra_args = ("--config", str(self.config_path), "--metering-period", str(period),
                           *extra_args)
        self.osb = OSB(self.endpoint)

    def set_credentials(self, user: str = USER, password: str = PASSWORD) -> None:
        subprocess.run([str(BIN), "broker", "set-credentials", user, "--password-stdin",
                        "--data-dir", str(self.data_dir)], input=password + "\n", text=True,
                       check=True, capture_output=True)

    def restart(self, *, kill: bool = False) -> None:
        if kill:
            self.kill9()
        else:
            self.stop()
        self.start()

    def blob_paths(self, instance_id: str) -> list[Path]:
        """The blob files holding a tenant's objects and parts, read from the metadata
        database (read-only) -- to prove they are gone from disk afterwards."""
        import hashlib

        account = "osb-" + hashlib.sha256(instance_id.encode()).hexdigest()[:40]
        db = sqlite3.connect(f"file:{self.data_dir / 'meta.db'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT o.segments FROM objects o JOIN buckets b ON b.name = o.bucket "
                "JOIN accounts a ON a.id = b.account_id WHERE a.name = ?", (account,)).fetchall()
            parts = db.execute(
                "SELECT p.blob_id FROM parts p JOIN uploads u ON u.upload_id = p.upload_id "
                "JOIN accounts a ON a.id = u.account_id WHERE a.name = ?", (account,)).fetchall()
        finally:
            db.close()
        ids = [seg[0] for (segments,) in rows for seg in json.loads(segments)]
        ids += [blob_id for (blob_id,) in parts]
        return [self.data_dir / "blobs" / i[:2] / i[2:4] / i for i in ids]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def bound(osb: OSB, instance_id: str | None = None, plan_id: str = STANDARD
          ) -> tuple[str, str, dict[str, str]]:
    """Provision an instance and bind it: (instance id, binding id, credentials)."""
    iid = instance_id or new_id("inst")
    assert osb.provision(iid, plan_id).status == 201
    bid = new_id("bind")
    resp = osb.bind(iid, bid, plan_id)
    assert resp.status == 201, resp.body
    return iid, bid, resp.json()["credentials"]


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


@pytest.fixture(scope="module")
def broker_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerNode]:
    """One broker node per test module (metering period 1 s)."""
    node = BrokerNode(tmp_path_factory.mktemp("broker") / "data")
    node.set_credentials()
    node.start()
    yield node
    node.stop()


@pytest.fixture
def osb(broker_node: BrokerNode) -> OSB:
    return broker_node.osb
