"""What a node sells, as the Open Service Broker catalog shows it: one service,
``object-storage``, and the operator's plans with their prices in each plan's metadata."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from silverlining.node.config import (
    DEFAULT_PLAN_NAME,
    PRICE_FIELDS,
    ConfigError,
    NodeFileConfig,
    PlanConfig,
    default_plan,
    format_decimal,
)
from silverlining.node.identity import NodeIdentity

SERVICE_NAME = "object-storage"


@dataclass(frozen=True)
class Offering:
    """What this node sells, as the catalog shows it."""

    service_id: str
    plans: tuple[PlanConfig, ...]
    endpoint: str
    region: str
    jurisdiction: str | None
    core_level_claimed: str | None
    version: str

    @classmethod
    def build(cls, cfg: NodeFileConfig, identity: NodeIdentity, *, region: str, endpoint: str,
              version: str) -> Offering:
        """The offering of a node from its configuration file. The service id is derived from
        the node's signing key: stable for the node, unique to it. Raises ConfigError."""
        plans = cfg.plans if cfg.plans is not None else (
            default_plan(identity.derived_id("plan/" + DEFAULT_PLAN_NAME)),)
        for p in plans:
            if p.region is not None and p.region != region:
                where = cfg.source or "config"
                raise ConfigError(
                    f"{where}: [[plans]] {p.name!r}: region {p.region!r} differs from the "
                    f"node's region {region!r}; a node serves one region (omit the plan's "
                    "region to inherit the node's)")
        return cls(
            service_id=identity.derived_id("service/" + SERVICE_NAME),
            plans=plans,
            endpoint=endpoint,
            region=region,
            jurisdiction=cfg.node.jurisdiction,
            core_level_claimed=cfg.node.core_level_claimed,
            version=version,
        )

    def plan(self, plan_id: str) -> PlanConfig | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def catalog(self) -> dict[str, Any]:
        return {"services": [{
            "id": self.service_id,
            "name": SERVICE_NAME,
            "description": "S3-compatible object storage on a Silver Lining provider node",
            "tags": ["s3", "object-storage", "silverlining"],
            "bindable": True,
            "instances_retrievable": True,
            "bindings_retrievable": True,
            "plan_updateable": True,
            "allow_context_updates": False,
            "metadata": {
                "displayName": "Object storage (S3 API)",
                "software": "silverlining",
                "software_version": self.version,
                "endpoint": self.endpoint,
                "region": self.region,
                "jurisdiction": self.jurisdiction,
                "core_level_claimed": self.core_level_claimed,
            },
            "plans": [self._plan(p) for p in self.plans],
        }]}

    def _plan(self, p: PlanConfig) -> dict[str, Any]:
        prices = {f.removeprefix("price_"): format_decimal(getattr(p, f)) for f in PRICE_FIELDS}
        return {
            "id": p.id,
            "name": p.name,
            "description": p.description,
            "free": p.free,
            "bindable": True,
            "plan_updateable": True,
            "metadata": {
                "displayName": p.name,
                # Decimal strings, never floats. gb_month: per GB (10^9 bytes) stored for a
                # month (730 hours); egress_gb: per GB sent; write_1k/read_1k: per 1,000
                # requests of that class (see docs/operators.md, "Metering").
                "prices": {"currency": p.currency, **prices,
                           "units": {"gb_bytes": 1_000_000_000, "month_hours": 730}},
                "region": p.region or self.region,
                "jurisdiction": p.jurisdiction or self.jurisdiction,
                "quota": {"bytes": p.quota_bytes, "objects": p.quota_objects},
                "core_level_claimed": self.core_level_claimed,
                "bullets": _bullets(p),
            },
        }

    def credentials(self, access_key_id: str, secret: str) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "region": self.region,
                "access_key_id": access_key_id, "secret_access_key": secret}

    def endpoints(self) -> list[dict[str, Any]]:
        # OSB v2.15+: "the network endpoints that the Application uses to connect".
        url = urllib.parse.urlsplit(self.endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        return [{"host": url.hostname or "", "ports": [str(port)], "protocol": "tcp"}]


def _bullets(p: PlanConfig) -> list[str]:
    out = [f"{format_decimal(p.price_gb_month)} {p.currency} per GB-month stored",
           f"{format_decimal(p.price_egress_gb)} {p.currency} per GB egress"]
    if p.quota_bytes is not None:
        out.append(f"up to {p.quota_bytes} bytes")
    if p.quota_objects is not None:
        out.append(f"up to {p.quota_objects} objects")
    return out
