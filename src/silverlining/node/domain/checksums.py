"""Digests computed while bytes stream through: MD5 (the ETag), the flexible checksums S3
supports (CRC32, CRC32C, SHA1, SHA256) and, for signed payloads, SHA-256 of the payload.

See https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Sequence
from typing import Protocol

import google_crc32c

from silverlining.node import errors
from silverlining.node.domain.md5lanes import (
    LANE_HASHER,
    LANE_MIN,
    MD5,
    SHA256,
    Stream,
    new_md5,
    new_sha256,
)

ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256")
#: Algorithms botocore knows that this node does not compute; asked for, they get 501.
UNSUPPORTED = ("CRC64NVME", "SHA512", "MD5", "XXHASH64", "XXHASH3", "XXHASH128")


class _Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crc32c:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        raw = data if isinstance(data, bytes) else bytes(data)
        self.value = google_crc32c.extend(self.value, raw)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm == "CRC32C":
        return _Crc32c()
    if algorithm == "SHA1":
        return hashlib.sha1()
    if algorithm == "SHA256":
        return hashlib.sha256()
    raise errors.NotImplementedYet(f"Checksum algorithm {algorithm} is not supported by this node.")


def normalize_algorithm(value: str) -> str:
    alg = value.strip().upper()
    if alg in ALGORITHMS:
        return alg
    if alg in UNSUPPORTED:
        raise errors.NotImplementedYet(f"Checksum algorithm {alg} is not supported by this node.")
    raise errors.InvalidRequest(f"Value for x-amz-checksum-algorithm header is invalid: {value}")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def composite(algorithm: str, part_checksums: list[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' raw checksums, '-N'."""
    h = new_hasher(algorithm)
    for value in part_checksums:
        h.update(base64.b64decode(value))
    return f"{b64(h.digest())}-{len(part_checksums)}"


class Digests:
    """MD5 always; SHA-256 of the payload when the request signed it; one flexible checksum.

    A large body's MD5 (and SHA-256, with SHA-NI) is hashed on the lane thread
    (:mod:`.md5lanes`) while this thread goes on; ``md5`` and ``sha256`` wait for it.
    ``abandon`` when the body is given up.
    """

    __slots__ = ("_md5", "_sha256", "_stream", "checksum", "checksum_algorithm", "size")

    def __init__(self, *, payload_sha256: bool, checksum_algorithm: str | None) -> None:
        self._md5 = new_md5()
        self._stream: Stream | None = None
        self._sha256 = new_sha256() if payload_sha256 else None
        self.checksum_algorithm = checksum_algorithm
        self.checksum = new_hasher(checksum_algorithm) if checksum_algorithm else None
        self.size = 0

    def _settle(self) -> None:
        """Wait until everything fed to the lane thread is hashed."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.finish()

    @property
    def md5(self) -> MD5:
        """The MD5 state, once everything fed to the lane thread is hashed."""
        self._settle()
        return self._md5

    @property
    def sha256(self) -> SHA256 | None:
        """The payload's SHA-256 state (None unless the request signed its payload), once
        everything fed to the lane thread is hashed."""
        self._settle()
        return self._sha256

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.update_many((data,))

    def update_many(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        if self._stream is None and sum(map(len, pieces)) >= LANE_MIN:
            self._stream = LANE_HASHER.open(self._md5, self._sha256)
        sha = self._sha256
        if self._stream is not None:
            self._stream.feed(pieces)
            if self._stream.sha is not None:
                sha = None  # hashed on the lane thread too
        else:
            for piece in pieces:
                self._md5.update(piece)
        for piece in pieces:
            if sha is not None:
                sha.update(piece)
            if self.checksum is not None:
                self.checksum.update(piece)
            self.size += len(piece)

    def abandon(self) -> None:
        """Stop hashing (the body is discarded): the lane thread drops what is queued."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abandon()

    def __del__(self) -> None:
        # A body dropped without ``abandon`` must not stay open on the lane thread: it
        # would make every round there wait for it.
        self.abandon()

    def checksum_b64(self) -> str | None:
        return None if self.checksum is None else b64(self.checksum.digest())
