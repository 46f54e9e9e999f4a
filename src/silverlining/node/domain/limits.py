"""Operator-set limits of a node (defaults are S3's)."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB


@dataclass(frozen=True, slots=True)
class Limits:
    max_object_size: int = 5 * TiB
    #: S3 caps a single PUT at 5 GiB; larger objects must use multipart.
    max_put_size: int = 5 * GiB
    max_part_size: int = 5 * GiB
    min_part_size: int = 5 * MiB
    max_parts: int = 10_000
    max_user_metadata: int = 2 * 1024
    max_delete_keys: int = 1000
    max_xml_body: int = 2 * MiB
