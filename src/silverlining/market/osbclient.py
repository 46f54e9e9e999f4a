"""A client of a provider's Open Service Broker API (v2.17): what the market, acting as a
platform, calls to read catalogs and to provision, bind, unbind and deprovision.

Asynchronous operations (202) are polled through ``last_operation`` until they end.
Every failure is a :class:`BrokerError` whose message says what the broker answered; the
broker's password never appears in one.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx

API_VERSION = "2.17"
ORGANIZATION = "silverlining-market"


class BrokerError(Exception):
    """The broker refused or failed a call, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class BrokerClient:
    url: str
    user: str
    password: str = field(repr=False)
    timeout: float = 30.0
    poll_interval: float = 0.2
    poll_timeout: float = 600.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, auth=(self.user, self.password), timeout=self.timeout,
            headers={"X-Broker-API-Version": API_VERSION}, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, body: Any = None,
              params: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> tuple[
                  int, Any]:
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as error:
            raise BrokerError(f"broker at {self.url} unreachable: {_describe(error)}") from None
        try:
            payload = resp.json() if resp.content else {}
        except ValueError:
            payload = None
        if resp.status_code not in ok:
            detail = ""
            if isinstance(payload, dict):
                detail = str(payload.get("description") or payload.get("error") or "")
            raise BrokerError(
                f"broker answered {resp.status_code} to {method} {path}"
                + (f": {detail}" if detail else ""), resp.status_code)
        if not isinstance(payload, dict):
            raise BrokerError(f"broker's answer to {method} {path} is not a JSON object",
                              resp.status_code)
        return resp.status_code, payload

    def catalog(self) -> dict[str, Any]:
        payload: dict[str, Any] = self._call("GET", "/v2/catalog")[1]
        return payload

    def provision(self, instance_id: str, service_id: str, plan_id: str,
                  parameters: dict[str, Any] | None = None, space: str = "market") -> None:
        """Create the instance; returns once it exists (polling an asynchronous provision)."""
        body: dict[str, Any] = {
            "service_id": service_id, "plan_id": plan_id,
            "organization_guid": ORGANIZATION, "space_guid": space,
            "context": {"platform": "silverlining-market", "organization_guid": ORGANIZATION,
                        "space_guid": space},
        }
        if parameters:
            body["parameters"] = parameters
        status, payload = self._call(
            "PUT", f"/v2/service_instances/{_q(instance_id)}", body=body,
            params={"accepts_incomplete": "true"}, ok=(200, 201, 202))
        if status == 202:
            self._wait(instance_id, service_id, plan_id, payload.get("operation"), "provision")

    def bind(self, instance_id: str, binding_id: str, service_id: str,
             plan_id: str) -> dict[str, Any]:
        """A new binding's credentials (``endpoint``, ``region``, ``access_key_id``,
        ``secret_access_key``)."""
        _, payload = self._call(
            "PUT", f"/v2/service_instances/{_q(instance_id)}/service_bindings/{_q(binding_id)}",
            body={"service_id": service_id, "plan_id": plan_id,
                  "bind_resource": {"app_guid": "silverlining-market"}},
            ok=(200, 201))
        credentials = payload.get("credentials")
        needed = ("endpoint", "access_key_id", "secret_access_key")
        if not isinstance(credentials, dict) or not all(
                isinstance(credentials.get(k), str) for k in needed):
            raise BrokerError("broker's binding has no S3 credentials "
                              f"(expected {', '.join(needed)})")
        return credentials

    def unbind(self, instance_id: str, binding_id: str, service_id: str, plan_id: str) -> None:
        """Remove a binding; one that is already gone (410) is fine."""
        self._call(
            "DELETE",
            f"/v2/service_instances/{_q(instance_id)}/service_bindings/{_q(binding_id)}",
            params={"service_id": service_id, "plan_id": plan_id}, ok=(200, 410))

    def deprovision(self, instance_id: str, service_id: str, plan_id: str) -> None:
        """Delete the instance and its data; returns once it is gone. Gone already is fine."""
        status, payload = self._call(
            "DELETE", f"/v2/service_instances/{_q(instance_id)}",
            params={"service_id": service_id, "plan_id": plan_id, "accepts_incomplete": "true"},
            ok=(200, 202, 410))
        if status == 202:
            self._wait(instance_id, service_id, plan_id, payload.get("operation"),
                       "deprovision")

    def _wait(self, instance_id: str, service_id: str, plan_id: str, operation: Any,
              what: str) -> None:
        params = {"service_id": service_id, "plan_id": plan_id}
        if isinstance(operation, str):
            params["operation"] = operation
        deadline = time.monotonic() + self.poll_timeout
        while time.monotonic() < deadline:
            status, payload = self._call(
                "GET", f"/v2/service_instances/{_q(instance_id)}/last_operation",
                params=params, ok=(200, 410))
            if status == 410:
                if what == "deprovision":
                    return
                raise BrokerError(f"{what} of {instance_id}: the instance vanished")
            state = payload.get("state")
            if state == "succeeded":
                return
            if state == "failed":
                raise BrokerError(f"{what} of {instance_id} failed: "
                                  f"{payload.get('description') or 'no description'}")
            time.sleep(self.poll_interval)
        raise BrokerError(f"{what} of {instance_id} did not finish in {self.poll_timeout:.0f} s")


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _describe(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
