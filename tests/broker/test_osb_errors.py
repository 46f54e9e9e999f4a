"""Every OSB error case answers with the spec's status and an OSB error body
(``{"error": ..., "description": ...}``) -- never a traceback, never a 500."""

from __future__ import annotations

import base64
import http.client
import json
import random
import secrets
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.broker.conftest import OSB, SMALL, STANDARD, bound, new_id, s3_client


def assert_osb_error(resp: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["description"], str) and body["description"]
    assert "Traceback" not in body["description"]
    if error is not None:
        assert body["error"] == error
    return dict(body)


# --- 401 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [
    None,  # no Authorization header
    "wrong-password",
    "wrong-user",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Bearer some-token",
])
def test_bad_credentials_get_401_with_a_challenge(osb: OSB, auth: str | None) -> None:
    if auth == "wrong-password":
        header: str | None = osb.auth_header(password="not-the-password-at-all")
    elif auth == "wrong-user":
        header = osb.auth_header(user="someone-else")
    else:
        header = auth
    for method, path in [("GET", "/v2/catalog"), ("PUT", "/v2/service_instances/x"),
                         ("DELETE", "/v2/service_instances/x"), ("GET", "/federation/usage")]:
        resp = osb.request(method, path, {} if method == "PUT" else None,
                           auth=header if header is not None else False)
        assert_osb_error(resp, 401, "Unauthorized")
        assert resp.headers["www-authenticate"].startswith('Basic realm="silverlining-broker"')


def test_identity_is_public(osb: OSB) -> None:
    resp = osb.request("GET", "/federation/identity", auth=False, version=None)
    assert resp.status == 200
    assert set(resp.json()) >= {"public_key", "version", "core_level_claimed"}


# --- 412 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "2.12", "2.0", "1.99", "3.0", "two", "", "2"])
def test_missing_or_old_api_version_gets_412(osb: OSB, version: str | None) -> None:
    resp = osb.request("GET", "/v2/catalog", version=version)
    body = assert_osb_error(resp, 412)
    assert "2.17" in body["description"]


@pytest.mark.parametrize("version", ["2.13", "2.14", "2.16", "2.17", "2.18"])
def test_supported_api_versions(osb: OSB, version: str) -> None:
    assert osb.request("GET", "/v2/catalog", version=version).status == 200


# --- 400 ------------------------------------------------------------------------------------


def test_unknown_plan_or_service_gets_400(osb: OSB) -> None:
    iid = new_id("inst")
    path = f"/v2/service_instances/{iid}"
    assert_osb_error(osb.provision(iid, "no-such-plan"), 400)
    assert_osb_error(osb.request("PUT", path, {"service_id": "nope", "plan_id": STANDARD}), 400)
    assert_osb_error(osb.request("PUT", path, {"plan_id": STANDARD}), 400)
    assert_osb_error(osb.request("PUT", path, {"service_id": osb.service_id}), 400)
    assert_osb_error(osb.request("PUT", path, {"service_id": osb.service_id,
                                               "plan_id": 42}), 400)
    assert_osb_error(osb.provision(iid, parameters={"size": "xl"}), 400)
    assert_osb_error(osb.provision(iid, context="not-an-object"), 400)
    # Nothing was provisioned by any of these.
    assert osb.request("GET", path).status == 404


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[1, 2, 3]",
    b'"a string"',
    b"",
    b"\xff\xfe\x00garbage",
    b'{"service_id": NaN}',
    b"[" * 60_000,  # deep nesting within the size limit
])
def test_malformed_bodies_get_400(osb: OSB, body: bytes) -> None:
    iid = new_id("inst")
    for method, path in [("PUT", f"/v2/service_instances/{iid}"),
                         ("PATCH", f"/v2/service_instances/{iid}"),
                         ("PUT", f"/v2/service_instances/{iid}/service_bindings/b")]:
        resp = osb.request(method, path, body, headers={"Content-Type": "application/json"})
        assert_osb_error(resp, 400, "BadRequest")


def test_wrong_content_type_gets_400(osb: OSB) -> None:
    body = json.dumps({"service_id": osb.service_id, "plan_id": STANDARD}).encode()
    resp = osb.request("PUT", f"/v2/service_instances/{new_id('inst')}", body,
                       headers={"Content-Type": "text/plain"})
    assert_osb_error(resp, 400)


def test_deprovision_and_unbind_require_service_and_plan(osb: OSB) -> None:
    iid, bid, _ = bound(osb)
    assert_osb_error(osb.request("DELETE", f"/v2/service_instances/{iid}"), 400)
    assert_osb_error(osb.request("DELETE", f"/v2/service_instances/{iid}",
                                 query={"service_id": osb.service_id}), 400)
    assert_osb_error(osb.request(
        "DELETE", f"/v2/service_instances/{iid}/service_bindings/{bid}",
        query={"plan_id": STANDARD}), 400)
    assert_osb_error(osb.request("DELETE", f"/v2/service_instances/{iid}",
                                 query={"service_id": osb.service_id, "plan_id": STANDARD,
                                        "accepts_incomplete": "maybe"}), 400)


def test_ids_must_be_sane(osb: OSB) -> None:
    assert_osb_error(osb.provision("x" * 300), 400)
    # An id may hold any character when percent-encoded, even "/".
    odd = f"odd%2Fid%20{secrets.token_hex(4)}"
    assert osb.provision(odd).status == 201
    assert osb.request("GET", f"/v2/service_instances/{odd}").status == 200
    assert osb.deprovision(odd).status == 200


# --- 404 / 409 / 410 / 422 ------------------------------------------------------------------


def test_conflicting_reprovision_gets_409(osb: OSB) -> None:
    iid = new_id("inst")
    assert osb.provision(iid).status == 201
    assert_osb_error(osb.provision(iid, SMALL), 409, "Conflict")
    assert_osb_error(osb.provision(iid, context={"platform": "other"}), 409)
    assert osb.provision(iid).status == 200


def test_unknown_resources(osb: OSB) -> None:
    iid = new_id("nope")
    assert_osb_error(osb.request("GET", f"/v2/service_instances/{iid}"), 404, "NotFound")
    assert_osb_error(osb.deprovision(iid), 410, "Gone")
    assert_osb_error(osb.last_operation(iid), 404)
    assert_osb_error(osb.request("PATCH", f"/v2/service_instances/{iid}",
                                 {"service_id": osb.service_id, "plan_id": SMALL}), 404)
    assert_osb_error(osb.request("GET", f"/v2/service_instances/{iid}/service_bindings/b"),
                     404)
    assert_osb_error(osb.unbind(iid, "b"), 410, "Gone")
    assert_osb_error(osb.request("GET", "/v2/no/such/thing"), 404)
    assert_osb_error(osb.request("GET", "/federation/nothing", version=None), 404)


def test_bindings_exist_refusal(osb: OSB) -> None:
    iid, bid, creds = bound(osb)
    body = assert_osb_error(osb.deprovision(iid), 422, "BindingsExist")
    assert "unbind" in body["description"]
    # A 4xx changes nothing: the binding's key still works.
    s3_client(creds).list_buckets()
    assert osb.unbind(iid, bid).status == 200
    assert osb.deprovision(iid).status == 200


def test_methods_not_allowed(osb: OSB) -> None:
    resp = osb.request("POST", "/v2/catalog", b"{}")
    assert_osb_error(resp, 405)
    assert resp.headers["allow"] == "GET"
    assert_osb_error(osb.request("POST", "/federation/usage", b"", version=None), 405)


# --- hostile input ----------------------------------------------------------------------------


def test_oversized_bodies_get_413(osb: OSB) -> None:
    iid = new_id("inst")
    big = json.dumps({"service_id": osb.service_id, "plan_id": STANDARD,
                      "context": {"pad": "x" * 200_000}}).encode()
    assert_osb_error(osb.request("PUT", f"/v2/service_instances/{iid}", big), 413)
    # Chunked, with no Content-Length to refuse up front.
    conn = http.client.HTTPConnection(osb.host, osb.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/v2/service_instances/{iid}")
        conn.putheader("Authorization", osb.auth_header())
        conn.putheader("X-Broker-API-Version", "2.17")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 16384
        try:
            for _ in range(10):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node answered and closed first: fine
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"] == "PayloadTooLarge"
    finally:
        conn.close()
    assert osb.request("GET", f"/v2/service_instances/{iid}").status == 404


def test_random_garbage_never_gets_a_5xx(osb: OSB) -> None:
    rng = random.Random(5)
    iid, bid, _ = bound(osb)
    paths = ["/v2/catalog", f"/v2/service_instances/{iid}",
             f"/v2/service_instances/{iid}/last_operation",
             f"/v2/service_instances/{iid}/service_bindings/{bid}",
             f"/v2/service_instances/{new_id('g')}/service_bindings/{new_id('g')}",
             "/federation/usage", "/federation/identity"]
    values: list[Any] = [None, 0, -1, 2**70, "", "x" * 300, [], {}, {"a": [1, {"b": None}]},
                         True, osb.service_id, STANDARD, 1.5]
    for _ in range(150):
        body: dict[str, Any] = {}
        for key in rng.sample(["service_id", "plan_id", "parameters", "context",
                               "bind_resource", "previous_values", "maintenance_info",
                               "organization_guid", "space_guid", "app_guid"], rng.randint(0, 6)):
            body[key] = rng.choice(values)
        query = {rng.choice(["service_id", "plan_id", "accepts_incomplete", "operation",
                             "since", "until", "limit", "instance_id"]): rng.choice(
                                 ["", "true", "x" * 50, "2024-13-45", "-1", STANDARD])
                 for _ in range(rng.randint(0, 3))}
        method = rng.choice(["GET", "PUT", "PATCH", "DELETE", "POST"])
        path = rng.choice(paths)
        resp = osb.request(method, path, body if method in ("PUT", "PATCH") else None,
                           query=query, version=rng.choice([None, "2.17", "2.17", "9.9"]))
        assert resp.status < 500, (method, path, body, query, resp.body)
        assert resp.headers["content-type"] == "application/json"
    assert osb.unbind(iid, bid).status in (200, 410)


# --- routing --------------------------------------------------------------------------------


def test_signed_s3_reaches_buckets_named_like_the_apis(osb: OSB) -> None:
    """``federation`` is a valid bucket name, and a virtual-hosted bucket may hold keys under
    ``v2/``: signed S3 requests are S3 whatever their path."""
    _, _, creds = bound(osb)
    s3 = s3_client(creds)
    s3.create_bucket(Bucket="federation")
    s3.put_object(Bucket="federation", Key="usage", Body=b"an object, not usage")
    assert s3.get_object(Bucket="federation", Key="usage")["Body"].read() == (
        b"an object, not usage")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "federation",
                                                          "Key": "usage"})
    presigned = osb.request("GET", url.split(str(osb.port), 1)[1], auth=False, version=None)
    assert presigned.body == b"an object, not usage"

    # Virtual-hosted style: Host "<bucket>.localhost", path "/v2/catalog" is the key.
    bucket = f"vh-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v2/catalog", Body=b"a key under v2/")
    host = f"{bucket}.localhost:{osb.port}"
    request = AWSRequest(method="GET", url=f"http://{host}/v2/catalog",
                         headers={"Host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(creds["access_key_id"], creds["secret_access_key"]), "s3",
              creds["region"]).add_auth(request)
    signed = osb.request("GET", "/v2/catalog", auth=False, version=None,
                         headers=dict(request.headers.items()))
    assert (signed.status, signed.body) == (200, b"a key under v2/")

    # Unsigned, the same paths are the broker's and the federation API's.
    assert "services" in osb.request("GET", "/v2/catalog").json()
    assert_osb_error(osb.request("GET", "/federation/usage", auth=False, version=None), 401)
    for name in ("federation", bucket):
        for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
