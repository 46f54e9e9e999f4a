"""The market's database: SQLite in the data dir by default, PostgreSQL through a URL.

Every table the market keeps is declared here, in SQLAlchemy Core. Money and prices are
stored as decimal strings (never floats); times as ISO-8601 UTC strings, which sort.
Secrets (broker passwords, buyers' secret keys) are stored encrypted by :mod:`.vault`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    make_url,
    select,
)

SCHEMA_VERSION = 1

metadata = MetaData()

settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # admin | buyer | provider
    Column("created_at", String(32), nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)

providers = Table(
    "providers", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("owner_account_id", String(36), ForeignKey("accounts.id")),
    Column("broker_url", Text, nullable=False),
    Column("broker_user", Text, nullable=False),
    Column("broker_password", Text, nullable=False),  # vault-sealed
    # pending (never certified) | listed | refused (never passed) | delisted (stopped passing)
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column("level", String(16)),
    Column("certified_at", String(32)),
    Column("last_certification_id", String(36)),
    Column("service_id", Text),
    Column("endpoint", Text),
    Column("region", String(64)),
    Column("jurisdiction", String(16)),
    Column("node_public_key", Text),  # the node's Ed25519 key (federation usage records)
    Column("catalog_json", Text),
    Column("catalog_at", String(32)),
    Column("catalog_error", Text),
    Column("health", String(16)),  # from probes: ok | degraded; None before the first
    Column("created_at", String(32), nullable=False),
)

certifications = Table(
    "certifications", metadata,
    Column("id", String(36), primary_key=True),
    Column("provider_id", String(36), ForeignKey("providers.id"), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32), nullable=False),
    Column("level", String(16), nullable=False),  # the level that was run
    Column("certified", String(16)),  # the highest level passed, if any
    Column("passed", Integer, nullable=False),
    Column("failed_json", Text, nullable=False),  # [{id, statement, reason}]
    Column("report_json", Text),  # the signed Core report; none when Core could not run
    Column("error", Text),
    Index("certifications_by_provider", "provider_id", "started_at"),
)

offers = Table(
    "offers", metadata,
    Column("id", String(36), primary_key=True),  # stable: derived from provider + plan id
    Column("provider_id", String(36), ForeignKey("providers.id"), nullable=False, index=True),
    Column("plan_id", Text, nullable=False),
    Column("plan_name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("price_gb_month", String(32), nullable=False),
    Column("price_egress_gb", String(32), nullable=False),
    Column("price_write_1k", String(32), nullable=False),
    Column("price_read_1k", String(32), nullable=False),
    Column("region", String(64), nullable=False),
    Column("jurisdiction", String(16)),
    Column("quota_bytes", Integer),
    Column("quota_objects", Integer),
    Column("active", Integer, nullable=False),  # 0 once the plan left the catalog
    Column("updated_at", String(32), nullable=False),
)

price_history = Table(
    "price_history", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("offer_id", String(36), nullable=False, index=True),
    Column("at", String(32), nullable=False),
    Column("prices_json", Text, nullable=False),
)

orders = Table(
    "orders", metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("created_at", String(32), nullable=False),
    Column("request_json", Text, nullable=False),
    Column("status", String(16), nullable=False),  # fulfilled | partial | failed
    Column("attempts_json", Text, nullable=False),
    Column("message", Text),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("order_id", String(36)),
    Column("provider_id", String(36), ForeignKey("providers.id"), nullable=False, index=True),
    Column("offer_id", String(36), nullable=False),
    Column("plan_id", Text, nullable=False),
    Column("plan_name", Text, nullable=False),
    Column("service_id", Text, nullable=False),
    Column("instance_id", String(36), nullable=False),
    Column("binding_id", String(36), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("region", String(64), nullable=False),
    Column("access_key_id", Text, nullable=False),
    Column("secret_access_key", Text, nullable=False),  # vault-sealed
    Column("currency", String(3), nullable=False),
    Column("prices_json", Text, nullable=False),  # fixed at order time: what bills
    Column("status", String(16), nullable=False),  # active | cancelled
    Column("flags_json", Text, nullable=False),  # e.g. ["provider-delisted"]
    Column("created_at", String(32), nullable=False),
    Column("cancelled_at", String(32)),
)

osb_instances = Table(
    "osb_instances", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("service_id", Text, nullable=False),
    Column("plan_id", Text, nullable=False),
    Column("parameters_json", Text, nullable=False),
    Column("subscription_id", String(36)),
    Column("order_id", String(36)),
    Column("created_at", String(32), nullable=False),
)

osb_bindings = Table(
    "osb_bindings", metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("binding_id", String(255), primary_key=True),
    Column("provider_binding_id", String(36), nullable=False),
    Column("credentials", Text, nullable=False),  # vault-sealed JSON
    Column("created_at", String(32), nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("detail_json", Text, nullable=False),
)


# --- billing (issue 7) ---------------------------------------------------------------------

usage_cursors = Table(
    "usage_cursors", metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("collected_until", String(32), nullable=False),  # every period before is stored
    Column("period_seconds", Integer),
)

usage_batches = Table(
    "usage_batches", metadata,
    Column("id", String(36), primary_key=True),
    Column("subscription_id", String(36), nullable=False, index=True),
    Column("provider_id", String(36), nullable=False),
    Column("fetched_at", String(32), nullable=False),
    Column("document", Text, nullable=False),  # the node's signed batch, as received
)

usage_records = Table(
    "usage_records", metadata,
    Column("id", String(36), primary_key=True),
    Column("subscription_id", String(36), nullable=False),
    Column("provider_id", String(36), nullable=False),
    Column("batch_id", String(36), nullable=False),
    Column("period_start", String(32), nullable=False),
    Column("period_end", String(32), nullable=False),
    Column("record_json", Text, nullable=False),  # the record exactly as signed
    Column("collected_at", String(32), nullable=False),
    Index("usage_records_once", "subscription_id", "period_start", unique=True),
)

ledger_transactions = Table(
    "ledger_transactions", metadata,
    Column("id", String(36), primary_key=True),
    Column("usage_record_id", String(36), nullable=False, unique=True),
    Column("subscription_id", String(36), nullable=False, index=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("provider_id", String(36), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("charge_start", String(32), nullable=False),
    Column("charge_end", String(32), nullable=False),
    Column("created_at", String(32), nullable=False),
)

ledger_entries = Table(
    "ledger_entries", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("transaction_id", String(36), nullable=False, index=True),
    Column("ledger_account", String(64), nullable=False),  # buyer:ID | provider:ID | market:fees
    Column("usage_type", String(32), nullable=False),
    Column("amount_micro", BigInteger, nullable=False),  # signed; a transaction sums to 0
    Column("quantity", String(48)),  # the consumed quantity, on the buyer's entry
)

disputes = Table(
    "disputes", metadata,
    Column("id", String(36), primary_key=True),
    Column("provider_id", String(36), nullable=False),
    Column("subscription_id", String(36)),
    Column("at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),  # bad-signature | changed-record | ...
    Column("detail", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | resolved
)

invoices = Table(
    "invoices", metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("period_start", String(32), nullable=False),
    Column("period_end", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),  # monthly | on-demand
    Column("total_micro", BigInteger, nullable=False),
    Column("lines_json", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)

budgets = Table(
    "budgets", metadata,
    Column("account_id", String(36), primary_key=True),
    Column("amount_micro", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("thresholds_json", Text, nullable=False),  # percentages, e.g. [50, 80, 100]
    Column("updated_at", String(32), nullable=False),
)

budget_alerts = Table(
    "budget_alerts", metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("month", String(7), nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("spend_micro", BigInteger, nullable=False),
    Column("budget_micro", BigInteger, nullable=False),
    Column("at", String(32), nullable=False),
    Index("budget_alerts_once", "account_id", "month", "threshold", unique=True),
)


# --- moves and probes (issue 8) ---------------------------------------------------------------

moves = Table(
    "moves", metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("source_subscription_id", String(36), nullable=False),
    Column("target_offer_id", String(36), nullable=False),
    # Chosen when the move is made, so that a resumed move finds what it provisioned.
    Column("target_subscription_id", String(36), nullable=False),
    Column("target_instance_id", String(36), nullable=False),
    Column("target_binding_id", String(36), nullable=False),
    # provisioning | copying | final-pass | switching | done | failed
    Column("state", String(16), nullable=False),
    Column("error", Text),
    Column("quote_json", Text, nullable=False),
    Column("progress_json", Text, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("finished_at", String(32)),
)

move_objects = Table(
    "move_objects", metadata,
    Column("move_id", String(36), primary_key=True),
    Column("bucket", String(255), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("etag", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checksum", Text, nullable=False),
)

probe_tenants = Table(
    "probe_tenants", metadata,
    Column("provider_id", String(36), primary_key=True),
    Column("instance_id", String(64), nullable=False),
    Column("binding_id", String(36), nullable=False),
    Column("plan_id", Text, nullable=False),
    Column("credentials", Text, nullable=False),  # vault-sealed JSON
)

probes = Table(
    "probes", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("provider_id", String(36), nullable=False),
    Column("at", String(32), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("latency_ms", Integer),  # the whole cycle, when it passed
    Column("detail_json", Text, nullable=False),  # per step: ms, or the error
    Index("probes_by_provider", "provider_id", "at"),
)


def now() -> str:
    """The current time as stored: ISO-8601 UTC to the microsecond (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'market.db'}"


class StoreError(Exception):
    """The database cannot be used (wrong schema version, unreachable server)."""


class Store:
    """Owns the engine. ``begin()`` gives a transaction; nothing is held across network calls."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(parsed, pool_size=5, max_overflow=10,
                                        pool_pre_ping=True)

    def create_schema(self) -> None:
        metadata.create_all(self.engine)
        with self.begin() as conn:
            version = conn.execute(
                select(settings.c.value).where(settings.c.key == "schema_version")).scalar()
            if version is None:
                conn.execute(insert(settings).values(key="schema_version",
                                                     value=str(SCHEMA_VERSION)))
            elif int(version) != SCHEMA_VERSION:
                raise StoreError(
                    f"the market database has schema version {version}; this release "
                    f"reads version {SCHEMA_VERSION}")

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Transactions are begun explicitly (below), so the driver must not begin its own.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the lock up front: no deadlock between two read-then-write transactions.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
