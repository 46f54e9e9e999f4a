"""Plain typed records the domain works with. No HTTP, no SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    canonical_id: str
    created_at: float
    quota_bytes: int | None = None
    quota_objects: int | None = None
    bytes_used: int = 0
    objects_used: int = 0


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    account_name: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    account_id: int
    region: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Segment:
    blob_id: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    bucket: str
    key: str
    size: int
    etag: str  # quoted, as on the wire: '"abc..."' or '"abc...-3"'
    last_modified: float
    segments: tuple[Segment, ...]
    #: lower-cased header name -> value: content-type, content-encoding, ...,
    #: and user metadata as x-amz-meta-*.
    headers: dict[str, str] = field(default_factory=dict)
    #: algorithm name (CRC32, CRC32C, SHA1, SHA256) -> base64 value; key "type" ->
    #: FULL_OBJECT or COMPOSITE.
    checksums: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parts_count: int | None = None
    #: The bytes of a small object stored inline (``segments`` is then empty).
    data: bytes | None = None

    @property
    def blob_ids(self) -> list[str]:
        return [s.blob_id for s in self.segments]


class ListEntry(NamedTuple):
    """One listed object. A tuple, not a dataclass: a listing page builds a thousand, and a
    frozen dataclass's ``__init__`` cost more than the SQL that read them."""

    key: str
    size: int
    etag: str
    last_modified: float


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    account_id: int
    initiated: float
    headers: dict[str, str]
    tags: dict[str, str]
    checksum_algorithm: str | None
    checksum_type: str | None


@dataclass(frozen=True, slots=True)
class Part:
    part_number: int
    blob_id: str
    size: int
    etag: str
    last_modified: float
    checksums: dict[str, str] = field(default_factory=dict)
