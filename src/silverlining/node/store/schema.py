"""SQLAlchemy tables of a node's metadata. One schema for SQLite and PostgreSQL.

Keys are compared in UTF-8 byte order (S3's listing order): SQLite's default BINARY
collation is memcmp over UTF-8, and PostgreSQL columns are declared ``COLLATE "C"``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Byte-order collation for keys and names (see module docstring).
BYTE_ORDER = "C"


def _key_column(name: str, **kw: object) -> Column[str]:
    return Column(name, Text().with_variant(Text(collation=BYTE_ORDER), "postgresql"), **kw)  # type: ignore[arg-type]


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("canonical_id", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("quota_bytes", BigInteger, nullable=True),
    Column("quota_objects", BigInteger, nullable=True),
    Column("bytes_used", BigInteger, nullable=False, default=0),
    Column("objects_used", BigInteger, nullable=False, default=0),
    # ids are never reused: usage history outlives a deleted account
    sqlite_autoincrement=True,
)

#: Every change of an account's stored bytes/objects, written in the same transaction as
#: the change itself, so stored byte-time can be integrated exactly (metering).
storage_events = Table(
    "storage_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("bytes_used", BigInteger, nullable=False),
    Column("objects_used", BigInteger, nullable=False),
    Index("ix_storage_events_account_ts", "account_id", "ts_ms"),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    # AES-GCM(node key) of the secret: the database alone cannot sign requests.
    Column("secret_enc", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

buckets = Table(
    "buckets",
    metadata,
    _key_column("name", primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("region", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

objects = Table(
    "objects",
    metadata,
    _key_column("bucket", primary_key=True),
    _key_column("key", primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("last_modified", Float, nullable=False),
    # [[blob_id, size], ...]: one segment for a simple object, one per part for multipart.
    Column("segments", JSON, nullable=False),
    # Content-Type, Content-Encoding, ..., and x-amz-meta-* (lower-cased names).
    Column("headers", JSON, nullable=False),
    # {"CRC32": "base64", ..., "type": "FULL_OBJECT"|"COMPOSITE"}
    Column("checksums", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("parts_count", Integer, nullable=True),
    # The bytes of a small object, kept in the row instead of a blob file (then segments is
    # empty): one durable commit instead of three fsyncs, and no file to open on GET.
    Column("data", LargeBinary, nullable=True),
)

uploads = Table(
    "uploads",
    metadata,
    Column("upload_id", String(64), primary_key=True),
    _key_column("bucket", nullable=False),
    _key_column("key", nullable=False),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("initiated", Float, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("checksum_algorithm", String(16), nullable=True),
    Column("checksum_type", String(16), nullable=True),
    Index("ix_uploads_bucket_key", "bucket", "key", "upload_id"),
)

parts = Table(
    "parts",
    metadata,
    Column("upload_id", String(64), ForeignKey("uploads.upload_id"), primary_key=True),
    Column("part_number", Integer, primary_key=True),
    Column("blob_id", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("last_modified", Float, nullable=False),
    Column("checksums", JSON, nullable=False),
)

# --- broker (Open Service Broker API) ---------------------------------------------------------

#: The one set of credentials the market (an OSB platform) presents with HTTP Basic auth.
#: ``password_hash`` is ``scrypt$N$r$p$<salt b64>$<hash b64>``: never the password itself.
broker_credentials = Table(
    "broker_credentials",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one broker identity per node
    Column("username", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: OSB service instances: one tenant account each. A deprovisioned instance stays as a
#: tombstone (state ``deprovisioned``) so its usage stays queryable by instance id and the
#: id is never handed out again.
service_instances = Table(
    "service_instances",
    metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("account_id", Integer, nullable=False, index=True),  # no FK: the tombstone outlives it
    Column("account_name", String(64), nullable=False),
    Column("service_id", String(255), nullable=False),
    Column("plan_id", String(255), nullable=False),
    # The provision request body as received (idempotency: same body -> 200, else 409).
    Column("request", JSON, nullable=False),
    Column("parameters", JSON, nullable=False),
    # provisioned | deprovisioning | deprovisioned
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deleted_at", Float, nullable=True),
    # The last operation, as OSB's last_operation endpoint reports it.
    Column("op_id", String(64), nullable=True),
    Column("op_type", String(16), nullable=False),  # provision | update | deprovision
    Column("op_state", String(16), nullable=False),  # in progress | succeeded | failed
    Column("op_description", Text, nullable=True),
)

service_bindings = Table(
    "service_bindings",
    metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("binding_id", String(255), primary_key=True),
    Column("access_key_id", String(32), nullable=False),
    Column("request", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

# --- metering ---------------------------------------------------------------------------------

#: Usage per account per metering period (period_start_ms is aligned to the period length).
#: Request counters are folded in from the per-process journals; the stored byte-time is
#: written once, when the period is closed (NULL while it is open). Byte-milliseconds can
#: exceed 64 bits (3 TB for an hour does), so they are kept as a decimal string.
usage_periods = Table(
    "usage_periods",
    metadata,
    Column("account_id", Integer, primary_key=True),
    Column("period_start_ms", BigInteger, primary_key=True),
    Column("requests_read", BigInteger, nullable=False, default=0),
    Column("requests_write", BigInteger, nullable=False, default=0),
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("bytes_out", BigInteger, nullable=False, default=0),
    Column("stored_byte_ms", Text, nullable=True),
    Column("stored_bytes_end", BigInteger, nullable=True),
    Index("ix_usage_periods_start", "period_start_ms"),
)

#: How far each journal file has been folded into usage_periods; advanced in the same
#: transaction as the counters it accounts for, so a record is counted exactly once.
metering_journals = Table(
    "metering_journals",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("consumed", BigInteger, nullable=False),  # bytes of the file folded
    Column("updated_at", Float, nullable=False),
)

#: Metering state: ``period_ms`` (fixed for a data directory), ``folded_until_ms`` (every
#: period ending at or before it is closed), ``event_cursor`` (last storage_events id folded).
metering_state = Table(
    "metering_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

#: Stored bytes of each account at ``folded_until_ms`` (rows with nothing stored are dropped).
metering_storage = Table(
    "metering_storage",
    metadata,
    Column("account_id", Integer, primary_key=True),
    Column("bytes_used", BigInteger, nullable=False),
    Column("objects_used", BigInteger, nullable=False),
)
