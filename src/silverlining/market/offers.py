"""Offers: every plan of every listed provider, as plain typed data, and what a buyer's
usage profile would cost on each.

A provider's OSB catalog carries its prices in each plan's metadata (decimal strings; see
docs/operators.md): ``gb_month`` per GB (10^9 bytes) stored for a month, ``egress_gb`` per GB
sent, ``write_1k`` / ``read_1k`` per 1,000 requests of that class. :func:`parse_catalog` turns
a catalog into :class:`PlanOffer` values and refuses one it cannot price.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

SERVICE_NAME = "object-storage"
PRICE_KEYS = ("gb_month", "egress_gb", "write_1k", "read_1k")
LEVELS = ("s3-basic", "s3-full")  # lowest first
#: Offer ids are derived from the provider and plan ids: stable across price refreshes.
_OFFER_NS = uuid.UUID("8d0c3a52-6a0e-4c59-9a8f-6c1d1f3e2b7a")


class CatalogError(Exception):
    """A provider's catalog cannot be read as object-storage offers."""


@dataclass(frozen=True)
class Prices:
    currency: str
    gb_month: Decimal
    egress_gb: Decimal
    write_1k: Decimal
    read_1k: Decimal

    def to_dict(self) -> dict[str, str]:
        return {"currency": self.currency, **{k: str(getattr(self, k)) for k in PRICE_KEYS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prices:
        return cls(str(data["currency"]), *(Decimal(str(data[k])) for k in PRICE_KEYS))


@dataclass(frozen=True)
class PlanOffer:
    """One plan as a provider's catalog describes it."""

    service_id: str
    plan_id: str
    plan_name: str
    description: str
    prices: Prices
    region: str
    jurisdiction: str | None
    quota_bytes: int | None
    quota_objects: int | None


@dataclass(frozen=True)
class ServiceInfo:
    service_id: str
    endpoint: str | None
    region: str | None
    jurisdiction: str | None
    plans: tuple[PlanOffer, ...]


def offer_id(provider_id: str, plan_id: str) -> str:
    return str(uuid.uuid5(_OFFER_NS, f"{provider_id}/{plan_id}"))


def parse_catalog(catalog: dict[str, Any]) -> ServiceInfo:
    """The object-storage service of a catalog and its priced plans. Raises CatalogError."""
    services = catalog.get("services")
    if not isinstance(services, list):
        raise CatalogError("the catalog has no services list")
    service = next((s for s in services if isinstance(s, dict)
                    and s.get("name") == SERVICE_NAME), None)
    if service is None:
        raise CatalogError(f"the catalog offers no {SERVICE_NAME!r} service")
    meta = service.get("metadata") if isinstance(service.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    plans: list[PlanOffer] = []
    for plan in service.get("plans") or []:
        if not isinstance(plan, dict):
            raise CatalogError("a plan in the catalog is not an object")
        plans.append(_plan(str(service.get("id")), plan, meta))
    if not plans:
        raise CatalogError(f"the {SERVICE_NAME!r} service has no plans")
    return ServiceInfo(
        service_id=str(service.get("id")),
        endpoint=_opt_str(meta.get("endpoint")),
        region=_opt_str(meta.get("region")),
        jurisdiction=_opt_str(meta.get("jurisdiction")),
        plans=tuple(plans),
    )


def _plan(service_id: str, plan: dict[str, Any], service_meta: dict[str, Any]) -> PlanOffer:
    name = str(plan.get("name") or plan.get("id"))
    meta = plan.get("metadata")
    prices = meta.get("prices") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not isinstance(prices, dict):
        raise CatalogError(f"plan {name!r} has no prices in its metadata")
    try:
        values = [Decimal(str(prices[k])) for k in PRICE_KEYS]
    except (KeyError, InvalidOperation):
        raise CatalogError(
            f"plan {name!r}: prices need decimal {', '.join(PRICE_KEYS)}") from None
    if any(not v.is_finite() or v < 0 for v in values):
        raise CatalogError(f"plan {name!r}: prices must be finite and not negative")
    currency = prices.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise CatalogError(f"plan {name!r}: prices need a 3-letter currency")
    region = _opt_str(meta.get("region")) or _opt_str(service_meta.get("region"))
    if region is None:
        raise CatalogError(f"plan {name!r} names no region")
    quota = meta.get("quota") if isinstance(meta.get("quota"), dict) else {}
    assert isinstance(quota, dict)
    return PlanOffer(
        service_id=service_id,
        plan_id=str(plan.get("id")),
        plan_name=name,
        description=str(plan.get("description") or ""),
        prices=Prices(currency, *values),
        region=region,
        jurisdiction=_opt_str(meta.get("jurisdiction"))
        or _opt_str(service_meta.get("jurisdiction")),
        quota_bytes=_opt_int(quota.get("bytes")),
        quota_objects=_opt_int(quota.get("objects")),
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- what a usage profile costs -------------------------------------------------------------

@dataclass(frozen=True)
class UsageProfile:
    """A buyer's expected month: GB stored on average, GB sent out, requests made (a share of
    them writes, the rest reads)."""

    gb: Decimal = Decimal(0)
    egress_gb: Decimal = Decimal(0)
    requests: int = 0
    write_share: Decimal = Decimal("0.2")

    @property
    def empty(self) -> bool:
        return self.gb == 0 and self.egress_gb == 0 and self.requests == 0


def monthly_cost(prices: Prices, profile: UsageProfile) -> Decimal:
    """The exact expected monthly cost (no rounding: ranking compares exact figures)."""
    writes = Decimal(profile.requests) * profile.write_share
    reads = Decimal(profile.requests) - writes
    return (profile.gb * prices.gb_month + profile.egress_gb * prices.egress_gb
            + writes / 1000 * prices.write_1k + reads / 1000 * prices.read_1k)


# --- the listed offers, filtered and ranked -------------------------------------------------

@dataclass(frozen=True)
class Offer:
    """A plan of a listed provider, as buyers see and match it."""

    id: str
    provider: str
    provider_id: str
    level: str
    plan: PlanOffer
    certified_at: str | None
    #: Measured by the market's probes (None before the first probe).
    availability: float | None = None
    latency_p50_ms: int | None = None
    latency_p99_ms: int | None = None
    health: str | None = None

    @property
    def prices(self) -> Prices:
        return self.plan.prices


@dataclass(frozen=True)
class OfferFilter:
    region: str | None = None
    jurisdiction: str | None = None
    min_level: str | None = None
    currency: str | None = None
    max_price_gb_month: Decimal | None = None
    max_price_egress_gb: Decimal | None = None
    provider: str | None = None
    #: Percent; a provider not yet probed has no measured availability and is excluded.
    min_availability: Decimal | None = None

    def admits(self, offer: Offer) -> bool:
        p = offer.plan
        if self.region and p.region != self.region:
            return False
        if self.jurisdiction and (p.jurisdiction or "").upper() != self.jurisdiction.upper():
            return False
        if self.min_level and level_rank(offer.level) < level_rank(self.min_level):
            return False
        if self.currency and p.prices.currency != self.currency.upper():
            return False
        if self.max_price_gb_month is not None and p.prices.gb_month > self.max_price_gb_month:
            return False
        if (self.max_price_egress_gb is not None
                and p.prices.egress_gb > self.max_price_egress_gb):
            return False
        if self.min_availability is not None and (
                offer.availability is None
                or Decimal(str(offer.availability)) < self.min_availability):
            return False
        return not (self.provider and offer.provider != self.provider)


def level_rank(level: str | None) -> int:
    return LEVELS.index(level) + 1 if level in LEVELS else 0


SORT_KEYS = ("estimate", "price_gb_month", "price_egress_gb", "provider", "region", "level")


def sort_offers(offers: Iterable[Offer], key: str, profile: UsageProfile) -> list[Offer]:
    """Offers in the order ``key`` asks for; ties broken by provider then plan name."""
    def tie(o: Offer) -> tuple[str, str]:
        return (o.provider, o.plan.plan_name)

    items = list(offers)
    if key == "estimate":
        return sorted(items, key=lambda o: (monthly_cost(o.prices, profile), *tie(o)))
    if key == "price_gb_month":
        return sorted(items, key=lambda o: (o.prices.gb_month, *tie(o)))
    if key == "price_egress_gb":
        return sorted(items, key=lambda o: (o.prices.egress_gb, *tie(o)))
    if key == "region":
        return sorted(items, key=lambda o: (o.plan.region, *tie(o)))
    if key == "level":
        return sorted(items, key=lambda o: (-level_rank(o.level), *tie(o)))
    return sorted(items, key=tie)


def currencies(offers: Sequence[Offer]) -> set[str]:
    return {o.prices.currency for o in offers}
