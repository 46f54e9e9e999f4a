"""The node's configuration file: what the node is (endpoint, region, jurisdiction) and what it
sells (plans and their prices). TOML, read once at start.

```toml
[node]
public_endpoint = "https://s3.example.net"   # what bindings hand out
region = "eu-central-1"
jurisdiction = "DE"
core_level_claimed = "s3-full"

[broker]
async_deprovision_objects = 10000   # deprovision in the background above these (202)
async_deprovision_bytes = 10000000000

[[plans]]
id = "3c1c8a52-5b0f-4a53-9d4e-4f7d4f1c2b11"   # never change it once sold
name = "standard"
description = "Hot object storage"
currency = "EUR"
price_gb_month = "0.020"    # decimal strings: money is never a float
price_egress_gb = "0.01"
price_write_1k = "0.005"
price_read_1k = "0.0004"
quota_bytes = 1000000000000
```

Everything is validated here; a problem raises :class:`ConfigError` whose message names the
file, the table and the key, and says what to write instead.
"""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

#: Certification levels of the Core kit a node may claim (see docs/core.md).
CORE_LEVELS = ("s3-basic", "s3-full")

_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# OSB: CLI-friendly names, "alphanumeric characters, periods, and hyphens, with no spaces".
_PLAN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_PLAN_ID = re.compile(r"^[A-Za-z0-9._~-]{1,255}$")  # RFC 3986 unreserved, as OSB recommends
_JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")

PRICE_FIELDS = ("price_gb_month", "price_egress_gb", "price_write_1k", "price_read_1k")


class ConfigError(Exception):
    """The configuration file is unusable; the message is one line saying why and where."""


@dataclass(frozen=True)
class PlanConfig:
    id: str
    name: str
    description: str
    currency: str
    price_gb_month: Decimal
    price_egress_gb: Decimal
    price_write_1k: Decimal
    price_read_1k: Decimal
    #: None: the node's region (a node serves one region).
    region: str | None = None
    #: None: the node's jurisdiction.
    jurisdiction: str | None = None
    quota_bytes: int | None = None
    quota_objects: int | None = None

    @property
    def free(self) -> bool:
        return all(getattr(self, f) == 0 for f in PRICE_FIELDS)


@dataclass(frozen=True)
class NodeSettings:
    #: What bindings hand out; None: ``http://HOST:PORT`` of ``serve``.
    public_endpoint: str | None = None
    #: None: ``--region`` of ``serve``.
    region: str | None = None
    jurisdiction: str | None = None
    core_level_claimed: str | None = None


@dataclass(frozen=True)
class BrokerSettings:
    #: A deprovision asked with ``accepts_incomplete=true`` runs in the background (202) when
    #: the tenant holds more than this many objects or bytes.
    async_deprovision_objects: int = 10_000
    async_deprovision_bytes: int = 10 * 1000**3


@dataclass(frozen=True)
class NodeFileConfig:
    node: NodeSettings = NodeSettings()
    broker: BrokerSettings = BrokerSettings()
    #: None: no plan configured, the built-in example plan ``standard`` is offered.
    plans: tuple[PlanConfig, ...] | None = None
    source: Path | None = None


#: The built-in plan when no configuration file defines any. Prices are an *example* (close
#: to a large public cloud's standard tier, in USD); an operator replaces them.
DEFAULT_PLAN_NAME = "standard"
DEFAULT_PLAN_PRICES = {
    "currency": "USD",
    "price_gb_month": Decimal("0.023"),
    "price_egress_gb": Decimal("0.09"),
    "price_write_1k": Decimal("0.005"),
    "price_read_1k": Decimal("0.0004"),
}


def default_plan(plan_id: str) -> PlanConfig:
    """The example plan ``standard`` (no quota), with a node-specific id."""
    return PlanConfig(
        id=plan_id,
        name=DEFAULT_PLAN_NAME,
        description="Standard object storage (example plan: define your own in config.toml)",
        **DEFAULT_PLAN_PRICES,  # type: ignore[arg-type]
    )


def load_config(path: Path) -> NodeFileConfig:
    """Read and validate a configuration file. Raises :class:`ConfigError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=path)


def parse_config(data: dict[str, Any], *, source: Path | None = None) -> NodeFileConfig:
    where = str(source) if source is not None else "config"
    _only(data, {"node", "broker", "plans"}, where, "the top level")
    node = _node(_table(data, "node", where), where)
    broker = _broker(_table(data, "broker", where), where)
    plans: tuple[PlanConfig, ...] | None = None
    if "plans" in data:
        items = data["plans"]
        if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
            raise ConfigError(f"{where}: 'plans' must be an array of tables ([[plans]])")
        if not items:
            raise ConfigError(f"{where}: [[plans]] is empty; define at least one plan")
        plans = tuple(_plan(p, i + 1, where) for i, p in enumerate(items))
        _unique(plans, where)
        if node.region is not None:
            for p in plans:
                if p.region is not None and p.region != node.region:
                    raise ConfigError(
                        f"{where}: [[plans]] {p.name!r}: region {p.region!r} differs from the "
                        f"node's region {node.region!r}; a node serves one region (omit the "
                        "plan's region to inherit the node's)"
                    )
    return NodeFileConfig(node=node, broker=broker, plans=plans, source=source)


# --- sections -------------------------------------------------------------------------------


def _node(t: dict[str, Any], where: str) -> NodeSettings:
    ctx = f"{where}: [node]"
    _only(t, {"public_endpoint", "region", "jurisdiction", "core_level_claimed"}, where,
          "[node]")
    endpoint = _opt_str(t, "public_endpoint", ctx)
    if endpoint is not None:
        endpoint = _endpoint(endpoint, ctx)
    region = _opt_str(t, "region", ctx)
    if region is not None and not _REGION.match(region):
        raise ConfigError(f"{ctx}: region {region!r} is not a region name like 'eu-central-1'")
    jurisdiction = _jurisdiction(_opt_str(t, "jurisdiction", ctx), ctx)
    level = _opt_str(t, "core_level_claimed", ctx)
    if level is not None and level not in CORE_LEVELS:
        raise ConfigError(
            f"{ctx}: core_level_claimed {level!r} is not a Core level (one of: "
            f"{', '.join(CORE_LEVELS)})"
        )
    return NodeSettings(endpoint, region, jurisdiction, level)


def _broker(t: dict[str, Any], where: str) -> BrokerSettings:
    ctx = f"{where}: [broker]"
    _only(t, {"async_deprovision_objects", "async_deprovision_bytes"}, where, "[broker]")
    d = BrokerSettings()
    objects = _opt_int(t, "async_deprovision_objects", ctx)
    size = _opt_int(t, "async_deprovision_bytes", ctx)
    return BrokerSettings(
        d.async_deprovision_objects if objects is None else objects,
        d.async_deprovision_bytes if size is None else size,
    )


def _plan(t: dict[str, Any], index: int, where: str) -> PlanConfig:
    label = f"#{index}"
    if isinstance(t.get("name"), str):
        label += f" ({t['name']!r})"
    ctx = f"{where}: [[plans]] {label}"
    allowed = {"id", "name", "description", "currency", *PRICE_FIELDS, "region",
               "jurisdiction", "quota_bytes", "quota_objects"}
    _only(t, allowed, where, f"[[plans]] {label}")
    for key in ("id", "name", "description", "currency", *PRICE_FIELDS):
        if key not in t:
            raise ConfigError(f"{ctx}: '{key}' is missing")
    plan_id = _str(t, "id", ctx)
    if not _PLAN_ID.match(plan_id):
        raise ConfigError(
            f"{ctx}: id {plan_id!r} must be 1-255 letters, digits, '.', '_', '~' or '-' "
            "(a UUID is recommended; it must never change once the plan is sold)"
        )
    name = _str(t, "name", ctx)
    if not _PLAN_NAME.match(name):
        raise ConfigError(
            f"{ctx}: name {name!r} must be CLI-friendly: letters, digits, '.' and '-', no "
            "spaces, at most 63 characters"
        )
    description = _str(t, "description", ctx).strip()
    if not description:
        raise ConfigError(f"{ctx}: description must not be empty")
    currency = _str(t, "currency", ctx)
    if not _CURRENCY.match(currency):
        raise ConfigError(
            f"{ctx}: currency {currency!r} must be an ISO 4217 code such as 'EUR' or 'USD'"
        )
    prices = {key: _price(t[key], key, ctx) for key in PRICE_FIELDS}
    region = _opt_str(t, "region", ctx)
    if region is not None and not _REGION.match(region):
        raise ConfigError(f"{ctx}: region {region!r} is not a region name like 'eu-central-1'")
    return PlanConfig(
        id=plan_id,
        name=name,
        description=description,
        currency=currency,
        region=region,
        jurisdiction=_jurisdiction(_opt_str(t, "jurisdiction", ctx), ctx),
        quota_bytes=_opt_int(t, "quota_bytes", ctx),
        quota_objects=_opt_int(t, "quota_objects", ctx),
        **prices,
    )


def _unique(plans: tuple[PlanConfig, ...], where: str) -> None:
    seen_ids: set[str] = set()
    seen_names: set[str] = set()
    for p in plans:
        if p.id in seen_ids:
            raise ConfigError(f"{where}: two plans have the id {p.id!r}; plan ids are unique")
        if p.name in seen_names:
            raise ConfigError(f"{where}: two plans are named {p.name!r}; plan names are unique")
        seen_ids.add(p.id)
        seen_names.add(p.name)


# --- values ---------------------------------------------------------------------------------


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table ([{key}])")
    return value


def _only(t: dict[str, Any], allowed: set[str], where: str, table: str) -> None:
    for key in t:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r} in {table} (allowed: {', '.join(sorted(allowed))})"
            )


def _str(t: dict[str, Any], key: str, ctx: str) -> str:
    value = t[key]
    if not isinstance(value, str):
        raise ConfigError(f"{ctx}: '{key}' must be a string")
    return value


def _opt_str(t: dict[str, Any], key: str, ctx: str) -> str | None:
    return None if key not in t else _str(t, key, ctx)


def _opt_int(t: dict[str, Any], key: str, ctx: str) -> int | None:
    if key not in t:
        return None
    value = t[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{ctx}: '{key}' must be a whole number >= 0")
    return value


def _price(value: Any, key: str, ctx: str) -> Decimal:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ConfigError(
            f"{ctx}: '{key}' must be a decimal string such as \"0.023\", not a number "
            "(money is never a float)"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{ctx}: '{key}' must be a decimal string such as \"0.023\"")
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        raise ConfigError(f"{ctx}: '{key}' = {value!r} is not a decimal number") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{ctx}: '{key}' = {value!r} must be a finite amount >= 0")
    return price


def _jurisdiction(value: str | None, ctx: str) -> str | None:
    if value is not None and value != "EU" and not _JURISDICTION.match(value):
        raise ConfigError(
            f"{ctx}: jurisdiction {value!r} must be an ISO 3166 code such as 'DE', 'US-CA' "
            "or 'EU'"
        )
    return value


def _endpoint(value: str, ctx: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{ctx}: public_endpoint {value!r} must be an http:// or https:// URL with a host"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(
            f"{ctx}: public_endpoint {value!r} must not have a path, query or fragment (S3 "
            "clients address buckets from the root)"
        )
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{ctx}: public_endpoint {value!r} has an invalid port") from None
    return value.rstrip("/")


def format_decimal(value: Decimal) -> str:
    """A price as plain decimal text (never exponent notation)."""
    text = format(value, "f")
    return text
