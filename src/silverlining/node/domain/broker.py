"""The node as an Open Service Broker: tenants provisioned as service instances, bindings that
issue access keys, and the broker's own credentials (the catalog is in ``catalog.py``). No
HTTP here.

Semantics follow the OSB API v2.17 (https://github.com/openservicebrokerapi/servicebroker/blob/
v2.17/spec.md); the sections quoted below are from it. Errors are :class:`BrokerError`
subclasses carrying the HTTP status and the OSB ``error`` code the spec prescribes; the
protocol layer renders them as ``{"error": ..., "description": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from silverlining.node.config import BrokerSettings, PlanConfig
from silverlining.node.domain.accounts import (
    AccountError,
    AccountService,
    new_key_id,
    new_secret,
)
from silverlining.node.domain.catalog import Offering
from silverlining.node.store import broker as store
from silverlining.node.store.blobs import BlobStore
from silverlining.node.store.keyring import Keyring
from silverlining.node.store.objects import ObjectRepository

log = logging.getLogger("silverlining.node.broker")

#: OSB API versions this broker speaks: 2.13 (the oldest with the behaviour relied on
#: here) to 2.17.
MIN_API_VERSION = (2, 13)
MAX_ID_LENGTH = 255
_PURGE_BATCH = 1000


# --- errors ---------------------------------------------------------------------------------


class BrokerError(Exception):
    """An OSB error: HTTP ``status``, ``error`` code (camel case) and a description."""

    status = 500
    error = "InternalError"

    def __init__(self, description: str, *, error: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if error is not None:
            self.error = error


class BadRequest(BrokerError):
    status, error = 400, "BadRequest"


class Unauthorized(BrokerError):
    status, error = 401, "Unauthorized"


class NotFound(BrokerError):
    status, error = 404, "NotFound"


class MethodNotAllowed(BrokerError):
    status, error = 405, "MethodNotAllowed"

    def __init__(self, description: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(description)
        self.allow = allow


class Conflict(BrokerError):
    status, error = 409, "Conflict"


class Gone(BrokerError):
    status, error = 410, "Gone"


class PreconditionFailed(BrokerError):
    status, error = 412, "UnsupportedAPIVersion"


class PayloadTooLarge(BrokerError):
    status, error = 413, "PayloadTooLarge"


class Unprocessable(BrokerError):
    """422. ``error`` is one of the spec's codes (AsyncRequired, ConcurrencyError, ...) or,
    where the spec names none, a code of ours (BindingsExist, UsageExceedsQuota)."""

    status = 422

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description, error=error)


# --- broker credentials ---------------------------------------------------------------------

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` (base64): what is stored instead of the password."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against :func:`hash_password`'s output."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        digest = base64.b64decode(digest_b64, validate=True)
        derived = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                                 maxmem=256 * 1024 * 1024, dklen=len(digest))
    except (ValueError, binascii.Error):
        log.error("the stored broker password hash is malformed; set the credentials again")
        return False
    return hmac.compare_digest(derived, digest)


class BrokerAuth:
    """Checks HTTP Basic credentials against the stored hash.

    The stored record is read on every call (a ``set-credentials`` takes effect on the next
    request, in every process). Deriving scrypt costs tens of milliseconds, so the outcome is
    remembered per (stored record, presented credentials) — keyed by an HMAC under a
    per-process random key, so no password is kept in memory either.
    """

    def __init__(self, repo: store.BrokerRepository) -> None:
        self.repo = repo
        self._key = os.urandom(32)
        self._verified: bytes | None = None
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        # Each derivation takes 16 MiB and tens of ms: a flood of wrong passwords waits here
        # instead of exhausting memory and every worker thread.
        self._kdf_slots = threading.BoundedSemaphore(2)

    def configured(self) -> bool:
        return self.repo.get_credentials() is not None

    def verify(self, username: str, password: str) -> bool:
        stored = self.repo.get_credentials()
        if stored is None:
            return False
        user, password_hash = stored
        token = hmac.new(self._key, "\0".join((user, password_hash, username, password))
                         .encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        with self._lock:
            if self._verified is not None and hmac.compare_digest(self._verified, token):
                return True
            if token in self._refused:
                return False
        ok = hmac.compare_digest(username.encode("utf-8", "surrogatepass"), user.encode())
        with self._kdf_slots:
            ok = check_password(password, password_hash) and ok
        with self._lock:
            if ok:
                self._verified = token
            else:
                self._refused[token] = None
                while len(self._refused) > 256:
                    self._refused.popitem(last=False)
        return ok


def validate_username(username: str) -> None:
    if not (1 <= len(username) <= 64) or ":" in username or not username.isprintable() or (
            username.strip() != username):
        raise ValueError("a broker username is 1-64 printable characters without ':' or "
                         "surrounding spaces")


# --- service instances and bindings ---------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The result of a mutating call: ``created`` (201 vs 200), the body, and for an
    asynchronous operation its id (202)."""

    body: dict[str, Any]
    created: bool = False
    operation: str | None = None


def account_name_for(instance_id: str) -> str:
    """The tenant account of an instance: ``osb-`` and a digest of the instance id (OSB ids
    are arbitrary strings; account names are not)."""
    return "osb-" + hashlib.sha256(instance_id.encode()).hexdigest()[:40]


def check_id(value: str, what: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH:
        raise BadRequest(f"the {what} must be 1-{MAX_ID_LENGTH} characters")


class BrokerService:
    def __init__(
        self,
        repo: store.BrokerRepository,
        accounts: AccountService,
        objects: ObjectRepository,
        blobs: BlobStore,
        keyring: Keyring,
        offering: Offering,
        settings: BrokerSettings,
    ) -> None:
        self.repo = repo
        self.accounts = accounts
        self.objects = objects
        self.blobs = blobs
        self.keyring = keyring
        self.offering = offering
        self.settings = settings
        self.auth = BrokerAuth(repo)
        self._workers: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # provisioning ------------------------------------------------------------------------
    def provision(self, instance_id: str, body: dict[str, Any]) -> Outcome:
        """PUT /v2/service_instances/:id. Spec: 201 when provisioned by this request, 200 when
        it exists with identical attributes, 409 when it exists with different ones."""
        check_id(instance_id, "instance id")
        plan = self._plan_of(body)
        parameters = _parameters(body)
        _optional_object(body, "context")
        instance, created = self._create(instance_id, body, plan, parameters)
        if not created:
            if instance.state != store.PROVISIONED:
                raise Conflict(
                    f"service instance {instance_id!r} existed and was deprovisioned (or is "
                    "being deprovisioned); instance ids are never reused")
            if instance.request != body:
                raise Conflict(
                    f"service instance {instance_id!r} already exists with different "
                    "attributes")
        return Outcome({}, created=created)

    def _create(self, instance_id: str, body: dict[str, Any], plan: PlanConfig,
                parameters: dict[str, Any]) -> tuple[store.Instance, bool]:
        try:
            return self.repo.create_instance(
                instance_id, account_name=account_name_for(instance_id),
                canonical_id=secrets.token_hex(32), service_id=self.offering.service_id,
                plan_id=plan.id, request=body, parameters=parameters,
                quota_bytes=plan.quota_bytes, quota_objects=plan.quota_objects)
        except store.NameTaken as exc:
            raise Conflict(
                f"the tenant account {exc} for this instance id already exists on the node "
                "(created by the operator?); use another instance id") from None

    def get_instance(self, instance_id: str) -> dict[str, Any]:
        inst = self._live(instance_id)
        return {"service_id": inst.service_id, "plan_id": inst.plan_id,
                "parameters": inst.parameters}

    def update(self, instance_id: str, body: dict[str, Any]) -> Outcome:
        """PATCH: a plan change applies the new plan's quotas. Spec: 200 with ``{}`` when
        applied or without effect; 422 when the change cannot be fulfilled, e.g. "Service
        Instance utilization is over the quota of the requested Service Plan"."""
        check_id(instance_id, "instance id")
        self._service_of(body)
        parameters = _parameters(body)
        _optional_object(body, "context")
        _optional_object(body, "previous_values")
        inst = self._live(instance_id)
        plan_id = body.get("plan_id")
        if plan_id is not None and not isinstance(plan_id, str):
            raise BadRequest("plan_id must be a string")
        if plan_id is None or plan_id == inst.plan_id:
            return Outcome({})
        plan = self.offering.plan(plan_id)
        if plan is None:
            raise BadRequest(f"plan_id {plan_id!r} is not a plan of this service (see "
                             "/v2/catalog)")
        del parameters  # no parameters are taken; _parameters refused any
        try:
            self.repo.change_plan(instance_id, plan.id, plan.quota_bytes, plan.quota_objects)
        except KeyError:
            raise NotFound(f"service instance {instance_id!r} does not exist") from None
        except store.NotProvisioned:
            raise Unprocessable("ConcurrencyError", "the service instance is being "
                                "deprovisioned") from None
        except store.OverQuota as exc:
            raise Unprocessable(
                "UsageExceedsQuota",
                f"the tenant stores {exc.bytes_used} bytes in {exc.objects_used} objects, more "
                f"than plan {plan.name!r} allows (bytes {plan.quota_bytes}, objects "
                f"{plan.quota_objects}); delete data first") from None
        return Outcome({})

    def deprovision(self, instance_id: str, query: dict[str, str],
                    accepts_incomplete: bool) -> Outcome:
        """DELETE: revoke every key of the tenant, delete its data and free its space.

        Spec: "Platforms MUST delete all Service Bindings for a Service Instance prior to
        attempting to deprovision the Service Instance. This specification does not specify
        what a Service Broker is to do if it receives a deprovision request while there are
        still Service Bindings" -- we refuse with 422 (the spec's status for a request that
        cannot be fulfilled in the instance's current state) and error ``BindingsExist``; a
        4xx leaves everything unchanged, as the spec requires of any 4xx.
        410 when the instance does not exist. With ``accepts_incomplete=true`` and a tenant
        above the configured size, 202 and the work continues in the background.
        """
        check_id(instance_id, "instance id")
        service_id, plan_id = _required_query(query)
        inst = self.repo.get_instance(instance_id)
        if inst is None or inst.state == store.DEPROVISIONED:
            raise Gone(f"service instance {instance_id!r} does not exist")
        self._match(inst, service_id, plan_id)
        op_id = "deprovision-" + secrets.token_hex(8)
        try:
            inst, usage = self.repo.start_deprovision(instance_id, op_id)
        except KeyError:
            raise Gone(f"service instance {instance_id!r} does not exist") from None
        except store.BindingsExist as exc:
            raise Unprocessable(
                "BindingsExist",
                f"service instance {instance_id!r} still has {exc.count} binding(s); unbind "
                "them first (OSB platforms delete bindings before deprovisioning)") from None
        if inst.state == store.DEPROVISIONED:
            raise Gone(f"service instance {instance_id!r} does not exist")
        if inst.op_id != op_id:  # a deprovision is already running
            if accepts_incomplete:
                return Outcome({"operation": inst.op_id}, operation=inst.op_id)
            raise Unprocessable("ConcurrencyError", "the service instance is being "
                                "deprovisioned; poll last_operation")
        large = (usage.objects_used > self.settings.async_deprovision_objects
                 or usage.bytes_used > self.settings.async_deprovision_bytes)
        if accepts_incomplete and large:
            self._submit(inst)
            return Outcome({"operation": op_id}, operation=op_id)
        if not self._purge(inst):
            raise BrokerError("deprovisioning failed part-way (see the node's log); the "
                              "tenant's keys are revoked; retry the DELETE")
        return Outcome({})

    def last_operation(self, instance_id: str, operation: str | None) -> dict[str, Any]:
        """Spec: 200 with state ``in progress``/``succeeded``/``failed``; "410 Gone:
        appropriate only for asynchronous delete operations" -- the instance is gone."""
        check_id(instance_id, "instance id")
        inst = self.repo.get_instance(instance_id)
        if inst is None:
            raise NotFound(f"service instance {instance_id!r} does not exist")
        if inst.state == store.DEPROVISIONED:
            raise Gone(f"service instance {instance_id!r} has been deprovisioned")
        if operation is not None and operation != (inst.op_id or ""):
            raise BadRequest(f"operation {operation!r} is not the last operation of this "
                             "service instance")
        out: dict[str, Any] = {"state": inst.op_state}
        if inst.op_description:
            out["description"] = inst.op_description
        return out

    # bindings ----------------------------------------------------------------------------
    def bind(self, instance_id: str, binding_id: str, body: dict[str, Any]) -> Outcome:
        """PUT a binding: issue an access key for the tenant. Spec: 201 when created, 200
        with the same credentials when it exists with identical parameters, 409 otherwise."""
        check_id(instance_id, "instance id")
        check_id(binding_id, "binding id")
        service_id = self._service_of(body)
        plan_id = body.get("plan_id")
        if not isinstance(plan_id, str) or not plan_id:
            raise BadRequest("plan_id (a string) is required")
        _parameters(body)
        _optional_object(body, "context")
        _optional_object(body, "bind_resource")
        inst = self.repo.get_instance(instance_id)
        if inst is None or inst.state == store.DEPROVISIONED:
            raise NotFound(f"service instance {instance_id!r} does not exist")
        self._match(inst, service_id, plan_id)
        key_id, secret = new_key_id(), new_secret()
        try:
            binding, created = self.repo.create_binding(
                instance_id, binding_id, access_key_id=key_id,
                secret_enc=self.keyring.encrypt(secret, key_id), request=body)
        except KeyError:
            raise NotFound(f"service instance {instance_id!r} does not exist") from None
        except store.NotProvisioned:
            raise Unprocessable("ConcurrencyError", "the service instance is being "
                                "deprovisioned") from None
        if not created:
            if binding.request != body:
                raise Conflict(f"service binding {binding_id!r} already exists with "
                               "different parameters")
            secret = self._secret(binding)
        return Outcome(self._binding_body(binding.access_key_id, secret), created=created)

    def get_binding(self, instance_id: str, binding_id: str) -> dict[str, Any]:
        check_id(instance_id, "instance id")
        check_id(binding_id, "binding id")
        binding = self.repo.get_binding(instance_id, binding_id)
        if binding is None:
            raise NotFound(f"service binding {binding_id!r} does not exist")
        body = self._binding_body(binding.access_key_id, self._secret(binding))
        body["parameters"] = binding.request.get("parameters") or {}
        return body

    def unbind(self, instance_id: str, binding_id: str, query: dict[str, str]) -> Outcome:
        """DELETE a binding: its key is revoked in the same transaction that forgets the
        binding, so the key is refused from the next request on. Spec: 410 if the binding
        does not exist."""
        check_id(instance_id, "instance id")
        check_id(binding_id, "binding id")
        service_id, plan_id = _required_query(query)
        inst = self.repo.get_instance(instance_id)
        if inst is not None:
            self._match(inst, service_id, plan_id)
        if self.repo.delete_binding(instance_id, binding_id) is None:
            raise Gone(f"service binding {binding_id!r} does not exist")
        return Outcome({})

    def binding_last_operation(self, instance_id: str, binding_id: str) -> dict[str, Any]:
        # Bindings are synchronous; a platform only polls after a 202, which never comes.
        if self.repo.get_binding(instance_id, binding_id) is None:
            raise Gone(f"service binding {binding_id!r} does not exist")
        return {"state": store.SUCCEEDED}

    # background deprovisioning -----------------------------------------------------------
    def resume(self) -> int:
        """Resume deprovisions interrupted by a stop or a crash. Returns how many."""
        pending = self.repo.pending_deprovisions()
        for inst in pending:
            log.info("resuming the deprovisioning of service instance %s", inst.instance_id)
            self._submit(inst)
        return len(pending)

    def close(self) -> None:
        """Stop background work between batches (it resumes at the next start)."""
        self._stopping.set()
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True, cancel_futures=True)

    def _submit(self, inst: store.Instance) -> None:
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="sl-deprovision")
            self._workers.submit(self._purge, inst)

    def _purge(self, inst: store.Instance) -> bool:
        """Delete the tenant's objects (in bounded transactions, freeing their blobs as it
        goes), then its uploads, buckets, keys and account. Idempotent: after a crash it is
        simply run again. Returns True when finished."""
        op_id = inst.op_id or ""
        try:
            total = self.repo.tenant_usage(inst.account_id).objects_used
            deleted = 0
            for bucket in self.objects.list_buckets(inst.account_id):
                while True:
                    if self._stopping.is_set():
                        return False
                    entries = self.objects.scan(bucket.name, "", True, _PURGE_BATCH)
                    if not entries:
                        break
                    records = self.objects.delete_objects(inst.account_id, bucket.name,
                                                          [e.key for e in entries])
                    for rec in records:
                        self.blobs.delete_many(rec.blob_ids)
                    deleted += len(records)
                    self.repo.set_progress(inst.instance_id, op_id,
                                           f"deleted {deleted} of {total} objects")
            # AccountError: already deleted by an earlier, interrupted run.
            with contextlib.suppress(AccountError):
                self.accounts.delete(inst.account_name, purge=True)
            if not self.repo.truncate_log():
                log.warning("could not truncate the metadata write-ahead log after "
                            "deprovisioning %s; old pages stay in it until reused",
                            inst.instance_id)
            self.repo.finish_deprovision(
                inst.instance_id, op_id, ok=True,
                description=f"deleted the tenant, its keys and {deleted} object(s)")
            return True
        except Exception as exc:
            log.exception("deprovisioning service instance %s failed", inst.instance_id)
            self.repo.finish_deprovision(
                inst.instance_id, op_id, ok=False,
                description=f"deprovisioning failed ({type(exc).__name__}); the tenant's keys "
                            "are revoked; retry the DELETE")
            return False

    # helpers -----------------------------------------------------------------------------
    def _live(self, instance_id: str) -> store.Instance:
        check_id(instance_id, "instance id")
        inst = self.repo.get_instance(instance_id)
        if inst is None or inst.state == store.DEPROVISIONED:
            raise NotFound(f"service instance {instance_id!r} does not exist")
        return inst

    def _service_of(self, body: dict[str, Any]) -> str:
        service_id = body.get("service_id")
        if not isinstance(service_id, str) or not service_id:
            raise BadRequest("service_id (a string) is required")
        if service_id != self.offering.service_id:
            raise BadRequest(f"service_id {service_id!r} is not a service of this broker "
                             "(see /v2/catalog)")
        return service_id

    def _plan_of(self, body: dict[str, Any]) -> PlanConfig:
        self._service_of(body)
        plan_id = body.get("plan_id")
        if not isinstance(plan_id, str) or not plan_id:
            raise BadRequest("plan_id (a string) is required")
        plan = self.offering.plan(plan_id)
        if plan is None:
            raise BadRequest(f"plan_id {plan_id!r} is not a plan of this service (see "
                             "/v2/catalog)")
        return plan

    def _match(self, inst: store.Instance, service_id: str, plan_id: str) -> None:
        if service_id != inst.service_id:
            raise BadRequest(f"service_id {service_id!r} is not the service of this instance")
        if plan_id != inst.plan_id:
            raise BadRequest(f"plan_id {plan_id!r} is not the plan of this instance "
                             f"({inst.plan_id!r})")

    def _secret(self, binding: store.Binding) -> str:
        if binding.secret_enc is None:
            raise Conflict(f"the access key of binding {binding.binding_id!r} was deleted by "
                           "the operator; unbind and bind again")
        return self.keyring.decrypt(binding.secret_enc, binding.access_key_id)

    def _binding_body(self, key_id: str, secret: str) -> dict[str, Any]:
        return {"credentials": self.offering.credentials(key_id, secret),
                "endpoints": self.offering.endpoints()}


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    params = _optional_object(body, "parameters")
    if params:
        raise BadRequest("this service takes no configuration parameters; got "
                         + ", ".join(sorted(map(repr, params))))
    return {}


def _optional_object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be a JSON object")
    return value


def _required_query(query: dict[str, str]) -> tuple[str, str]:
    """Spec: service_id and plan_id are REQUIRED query parameters of the DELETEs."""
    missing = [k for k in ("service_id", "plan_id") if not query.get(k)]
    if missing:
        raise BadRequest(f"the query parameter(s) {' and '.join(missing)} are required")
    return query["service_id"], query["plan_id"]
