"""Probes: the market measures every provider itself, on a schedule.

A probe reads the provider's OSB catalog, then runs a small signed cycle in a probe tenant of
the market's own (PUT, GET with the bytes checked, LIST, DELETE) and records whether it all
worked and how long it took. Availability is the share of passing probes over the last
``WINDOW`` probes; latency is the p50 and p99 of the passing cycles. A provider whose last
``DEGRADED_AFTER`` probes all failed is *degraded*: its buyers' subscriptions are flagged
(``provider-degraded``) until a probe passes again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config
from sqlalchemy import insert, select, update

from silverlining.market import store
from silverlining.market.osbclient import BrokerError
from silverlining.market.registry import (
    Provider,
    _flag_subscriptions,
    broker_for,
    list_providers,
)
from silverlining.market.state import SYSTEM, MarketState, record

WINDOW = 100
DEGRADED_AFTER = 3
DEGRADED_FLAG = "provider-degraded"
PROBE_BUCKET = "silverlining-probe"


def _tenant(state: MarketState, provider: Provider) -> dict[str, Any]:
    """The market's probe tenant at ``provider`` (made on first use, then kept)."""
    t = store.probe_tenants
    with state.store.begin() as conn:
        row = conn.execute(select(t).where(t.c.provider_id == provider.id)).first()
    if row is not None:
        creds: dict[str, Any] = json.loads(
            state.vault.open(row.credentials, f"probe/{provider.id}"))
        return creds
    with state.store.begin() as conn:
        offer = conn.execute(select(store.offers.c.plan_id).where(
            store.offers.c.provider_id == provider.id, store.offers.c.active == 1)).first()
    if offer is None or provider.service_id is None:
        raise BrokerError("no plan to probe with")
    instance, binding = f"probe-{uuid.uuid4()}", str(uuid.uuid4())
    with broker_for(state, provider) as broker:
        broker.provision(instance, provider.service_id, offer.plan_id, space="probes")
        creds = broker.bind(instance, binding, provider.service_id, offer.plan_id)
    with state.store.begin() as conn:
        conn.execute(insert(t).values(
            provider_id=provider.id, instance_id=instance, binding_id=binding,
            plan_id=offer.plan_id,
            credentials=state.vault.seal(json.dumps(creds), f"probe/{provider.id}")))
    return creds


def probe(state: MarketState, provider: Provider) -> dict[str, Any]:
    """One probe of ``provider``; recorded, and returned."""
    steps: dict[str, Any] = {}
    ok = True
    started = time.monotonic()
    try:
        mark = time.monotonic()
        with broker_for(state, provider) as broker:
            broker.timeout = 10
            broker.catalog()
        steps["catalog_ms"] = _ms(mark)
        creds = _tenant(state, provider)
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=creds["endpoint"], region_name=creds.get("region") or "us-east-1",
            aws_access_key_id=creds["access_key_id"],
            aws_secret_access_key=creds["secret_access_key"],
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=10,
                          retries={"max_attempts": 1}))
        try:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=PROBE_BUCKET)
            body = os.urandom(1024)
            key = f"probe-{uuid.uuid4().hex}"
            cycle = time.monotonic()
            s3.put_object(Bucket=PROBE_BUCKET, Key=key, Body=body)
            steps["put_ms"] = _ms(cycle)
            mark = time.monotonic()
            if s3.get_object(Bucket=PROBE_BUCKET, Key=key)["Body"].read() != body:
                raise ValueError("GET returned other bytes than were PUT")
            steps["get_ms"] = _ms(mark)
            mark = time.monotonic()
            listed = s3.list_objects_v2(Bucket=PROBE_BUCKET, Prefix=key)
            if [o["Key"] for o in listed.get("Contents", [])] != [key]:
                raise ValueError("LIST did not show the object just PUT")
            steps["list_ms"] = _ms(mark)
            mark = time.monotonic()
            s3.delete_object(Bucket=PROBE_BUCKET, Key=key)
            steps["delete_ms"] = _ms(mark)
            steps["cycle_ms"] = _ms(cycle)
        finally:
            s3.close()
    except Exception as error:  # any failure is the provider's: recorded, never raised
        ok = False
        steps["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    latency = steps.get("cycle_ms") if ok else None
    steps["total_ms"] = _ms(started)
    with state.store.begin() as conn:
        conn.execute(insert(store.probes).values(
            provider_id=provider.id, at=store.now(), ok=int(ok), latency_ms=latency,
            detail_json=store.dumps(steps)))
        recent = [r.ok for r in conn.execute(select(store.probes.c.ok).where(
            store.probes.c.provider_id == provider.id).order_by(
            store.probes.c.seq.desc()).limit(DEGRADED_AFTER)).all()]
        degraded = len(recent) == DEGRADED_AFTER and not any(recent)
        health = "degraded" if degraded else ("ok" if ok else provider.health or "ok")
        if health != provider.health:
            conn.execute(update(store.providers).where(
                store.providers.c.id == provider.id).values(health=health))
            _flag_subscriptions(conn, provider.id, DEGRADED_FLAG, on=health == "degraded")
            record(conn, SYSTEM, "provider.health", provider.name, health=health,
                   last_error=steps.get("error"))
    return {"ok": ok, **steps}


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


def probe_all(state: MarketState) -> int:
    count = 0
    for provider in list_providers(state):
        if provider.status in ("listed", "delisted"):
            probe(state, provider)
            count += 1
    return count


def figures(state: MarketState) -> dict[str, dict[str, Any]]:
    """Per provider id: availability (percent, over the last WINDOW probes) and latency."""
    out: dict[str, dict[str, Any]] = {}
    with state.store.begin() as conn:
        ids = [r.id for r in conn.execute(select(store.providers.c.id)).all()]
        for pid in ids:
            rows = conn.execute(select(store.probes.c.ok, store.probes.c.latency_ms,
                                       store.probes.c.at).where(
                store.probes.c.provider_id == pid).order_by(
                store.probes.c.seq.desc()).limit(WINDOW)).all()
            if not rows:
                continue
            passed = sorted(r.latency_ms for r in rows if r.ok and r.latency_ms is not None)
            out[pid] = {
                "probes": len(rows),
                "availability": round(100 * sum(r.ok for r in rows) / len(rows), 2),
                "latency_p50_ms": _pct(passed, 50), "latency_p99_ms": _pct(passed, 99),
                "last_probe_at": rows[0].at, "last_ok": bool(rows[0].ok),
            }
    return out


def history(state: MarketState, provider_id: str, limit: int = 500) -> list[dict[str, Any]]:
    with state.store.begin() as conn:
        rows = conn.execute(select(store.probes).where(
            store.probes.c.provider_id == provider_id).order_by(
            store.probes.c.seq.desc()).limit(limit)).all()
    return [{"at": r.at, "ok": bool(r.ok), "latency_ms": r.latency_ms,
             "detail": json.loads(r.detail_json)} for r in reversed(rows)]


def _pct(values: list[int], p: int) -> int | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, -(-len(values) * p // 100) - 1))
    return values[index]
