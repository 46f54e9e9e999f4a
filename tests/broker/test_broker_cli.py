"""The operator's side: broker credentials, the configuration file and its errors, and what
never appears in logs."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.broker.conftest import CONFIG, OSB, PASSWORD, USER, BrokerNode, bound
from tests.conftest import BIN, NodeProcess, free_port


def run(*args: str, data_dir: Path, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args, "--data-dir", str(data_dir)], input=stdin,
                          text=True, capture_output=True, check=check, timeout=60)


def test_set_credentials_generates_a_password_shown_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = json.loads(run("broker", "set-credentials", "market", "--json", data_dir=data).stdout)
    assert out["username"] == "market"
    password = out["password"]
    assert len(password) >= 32
    shown = json.loads(run("broker", "show", "--json", data_dir=data).stdout)
    assert shown["username"] == "market"
    assert shown["configured"] is True
    assert password not in json.dumps(shown)
    # Only a salted hash is stored.
    stored = b"".join(p.read_bytes() for p in data.glob("meta.db*"))
    assert password.encode() not in stored
    human = run("broker", "set-credentials", "market", data_dir=data).stdout
    assert "shown only once" in human
    # A password given on stdin is not echoed back.
    quiet = run("broker", "set-credentials", "market", "--password-stdin", "--json",
                data_dir=data, stdin="a-long-enough-password\n").stdout
    assert json.loads(quiet) == {"username": "market"}


@pytest.mark.parametrize(("user", "password", "message"), [
    ("market", "short", "at least 16"),
    ("mar:ket", "a-long-enough-password", "without ':'"),
    ("", "a-long-enough-password", "1-64"),
])
def test_set_credentials_refuses_bad_input(tmp_path: Path, user: str, password: str,
                                           message: str) -> None:
    res = run("broker", "set-credentials", user, "--password-stdin", data_dir=tmp_path / "d",
              stdin=password + "\n", check=False)
    assert res.returncode == 1
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_rotated_credentials_take_effect_on_the_next_request(tmp_path: Path) -> None:
    node = BrokerNode(tmp_path / "data")
    node.set_credentials()
    node.start()
    try:
        osb = node.osb
        assert osb.request("GET", "/v2/catalog").status == 200
        node.set_credentials(USER, "a-brand-new-password-0123")
        assert osb.request("GET", "/v2/catalog").status == 401
        fresh = OSB(node.endpoint, USER, "a-brand-new-password-0123")
        assert fresh.request("GET", "/v2/catalog").status == 200
        iid, _, _ = bound(fresh)
        listed = json.loads(run("broker", "instances", "--json", data_dir=node.data_dir).stdout)
        assert [(i["instance_id"], i["state"], i["bindings"]) for i in listed] == [
            (iid, "provisioned", 1)]
    finally:
        node.stop()


def test_broker_is_closed_until_credentials_are_set(tmp_path: Path) -> None:
    node = BrokerNode(tmp_path / "data")
    node.start()
    try:
        resp = node.osb.request("GET", "/v2/catalog")
        assert resp.status == 401
        assert "set-credentials" in resp.json()["description"]
    finally:
        node.stop()


# --- configuration ----------------------------------------------------------------------------

PLAN = """
[[plans]]
id = "p1"
name = "standard"
description = "d"
currency = "EUR"
price_gb_month = "0.02"
price_egress_gb = "0.01"
price_write_1k = "0.005"
price_read_1k = "0.0004"
"""


@pytest.mark.parametrize(("config", "message"), [
    ("[node\nregion = 1", "not valid TOML"),
    (PLAN.replace('"0.02"', "0.02"), "money is never a float"),
    (PLAN.replace('"0.02"', '"two cents"'), "not a decimal number"),
    (PLAN.replace('"0.02"', '"-1"'), ">= 0"),
    (PLAN.replace('currency = "EUR"', 'currency = "euro"'), "ISO 4217"),
    (PLAN + PLAN, "two plans have the id 'p1'"),
    (PLAN.replace('name = "standard"', 'name = "has space"'), "CLI-friendly"),
    (PLAN.replace('description = "d"', 'descripton = "d"'), "unknown key 'descripton'"),
    (PLAN.replace('id = "p1"\n', ""), "'id' is missing"),
    ('[node]\npublic_endpoint = "ftp://x"\n' + PLAN, "http:// or https://"),
    ('[node]\npublic_endpoint = "https://x/prefix"\n' + PLAN, "must not have a path"),
    ('[node]\ncore_level_claimed = "gold"\n' + PLAN, "not a Core level"),
    ('[node]\nregion = "eu-central-1"\n' + PLAN.replace('price_read_1k = "0.0004"',
                                                       'price_read_1k = "0.0004"\n'
                                                       'region = "us-west-2"'),
     "differs from the node's region"),
    ("[[plans]]\n", "'id' is missing"),
    ("plans = []\n", "define at least one plan"),
    ("[broker]\nasync_deprovision_objects = -3\n", "whole number >= 0"),
    ("[colour]\n", "unknown key 'colour'"),
])
def test_a_bad_config_makes_serve_exit_2_with_one_line(tmp_path: Path, config: str,
                                                       message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config)
    res = subprocess.run(
        [str(BIN), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
         "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert str(path) in lines[0] or message == "not valid TOML"


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [str(BIN), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
         "--config", str(tmp_path / "nope.toml")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: no such configuration file"


def test_the_metering_period_is_fixed_per_data_directory(tmp_path: Path) -> None:
    node = BrokerNode(tmp_path / "data", period=1)
    node.start()
    node.stop()
    res = subprocess.run(
        [str(BIN), "serve", "--port", str(free_port()), "--data-dir", str(node.data_dir),
         "--metering-period", "60"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1
    assert "meters in periods of 1 s" in res.stderr


def test_default_plan_and_data_dir_config(tmp_path: Path) -> None:
    # No configuration: the example plan "standard", with an id stable across restarts.
    plain = NodeProcess(tmp_path / "plain")
    run("broker", "set-credentials", USER, "--password-stdin", data_dir=plain.data_dir,
        stdin=PASSWORD + "\n")
    plain.start()
    try:
        catalog = OSB(plain.endpoint).request("GET", "/v2/catalog").json()
        (plan,) = catalog["services"][0]["plans"]
        assert plan["name"] == "standard"
        assert plan["metadata"]["prices"]["currency"] == "USD"
        plain.stop()
        plain.start()
        assert OSB(plain.endpoint).request("GET", "/v2/catalog").json() == catalog
    finally:
        plain.stop()
    # <data-dir>/config.toml is read when --config is not given.
    node = NodeProcess(tmp_path / "withconf")
    node.data_dir.mkdir(parents=True)
    (node.data_dir / "config.toml").write_text(CONFIG.replace("{endpoint}", node.endpoint))
    run("broker", "set-credentials", USER, "--password-stdin", data_dir=node.data_dir,
        stdin=PASSWORD + "\n")
    node.start()
    try:
        plans = OSB(node.endpoint).request("GET", "/v2/catalog").json()["services"][0]["plans"]
        assert [p["name"] for p in plans] == ["standard", "small", "tiny"]
    finally:
        node.stop()


# --- secrets in logs ----------------------------------------------------------------------------


def test_passwords_and_secrets_never_reach_the_log(tmp_path: Path) -> None:
    node = BrokerNode(tmp_path / "data", extra_args=("--access-log", "--log-level", "debug"))
    node.set_credentials()
    node.start()
    secrets_seen: list[str] = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    try:
        osb = node.osb
        iid, bid, creds = bound(osb)
        secrets_seen += [creds["secret_access_key"]]
        got = osb.request("GET", f"/v2/service_instances/{iid}/service_bindings/{bid}").json()
        assert got["credentials"] == creds
        wrong = "a-wrong-password-for-the-log-test"
        assert osb.request("GET", "/v2/catalog",
                           auth=osb.auth_header(password=wrong)).status == 401
        secrets_seen += [wrong, base64.b64encode(f"{USER}:{wrong}".encode()).decode()]
        osb.request("PUT", f"/v2/service_instances/{iid}", b"{garbage " + PASSWORD.encode())
        assert osb.usage(instance_id=iid).status == 200
        osb.unbind(iid, bid)
    finally:
        node.stop()
    log: Any = node.log_path.read_text()
    assert " broker PUT /v2/service_instances/" in log  # the access log was on
    for secret in secrets_seen:
        assert secret not in log
