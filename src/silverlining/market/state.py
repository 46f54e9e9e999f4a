"""What every part of the market shares: its settings, database, vault and signing key; the
errors the API maps to HTTP statuses; who is asking; and the audit log."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert

from silverlining.core.signing import generate_key, load_private_key
from silverlining.market import store
from silverlining.market.store import Store
from silverlining.market.vault import Vault

SIGNING_KEY_FILE = "market-signing.key"
ROLES = ("admin", "buyer", "provider")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    #: Providers are listed when Core certifies them at this level or higher.
    listing_level: str = "s3-basic"
    #: The level Core runs at certification (the highest it can then certify).
    core_level: str = "s3-full"
    core_workers: int = 8
    recertify_interval: float = 86_400.0
    refresh_interval: float = 3_600.0
    #: How often usage records are collected from the providers.
    collect_interval: float = 300.0
    #: How often every provider is probed (availability, latency).
    probe_interval: float = 300.0
    #: Objects (or parts) copied at a time by each move.
    move_workers: int = 8
    #: How long a broker call may take before the market gives up on it.
    broker_timeout: float = 30.0
    #: The market's cut of every priced usage line, in percent (issue 7's ledger).
    fee_percent: str = "5"
    public_url: str | None = None


class MarketError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(MarketError):
    status = 422


class Unauthorized(MarketError):
    status = 401


class Forbidden(MarketError):
    status = 403


class NotFound(MarketError):
    status = 404


class Conflict(MarketError):
    status = 409


class NoMatch(MarketError):
    """No offer satisfies an order, or every candidate failed to provision."""

    status = 409


class Upstream(MarketError):
    """A provider's broker failed a call the market needed. 424 Failed Dependency (RFC 4918):
    the market worked, the provider it depends on did not; the message names the provider."""

    status = 424


@dataclass(frozen=True)
class Principal:
    account_id: str
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


SYSTEM = Principal("", "market", "admin")  # the scheduler's own actions


@dataclass
class MarketState:
    settings: Settings
    store: Store
    vault: Vault
    signing_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def open(cls, settings: Settings) -> MarketState:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.database_url or store.sqlite_url(settings.data_dir)
        db = Store(url)
        db.create_schema()
        key_path = settings.data_dir / SIGNING_KEY_FILE
        key = (load_private_key(key_path) if key_path.exists()
               else generate_key(key_path))
        return cls(settings, db, Vault.load_or_create(settings.data_dir), key)

    def close(self) -> None:
        self.store.dispose()


def record(conn: Connection, actor: Principal, action: str, subject: str,
           **detail: Any) -> None:
    """Append to the audit log, in the same transaction as the change it describes."""
    conn.execute(insert(store.audit).values(
        at=store.now(), actor=actor.name, action=action, subject=subject,
        detail_json=store.dumps(detail)))


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
