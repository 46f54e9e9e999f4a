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
