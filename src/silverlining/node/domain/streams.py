"""Bytes in and out of the blob store, with the digests S3 promises.

:class:`Ingest` receives an object's (or part's) bytes, hashes them and writes them to a new
blob; nothing is visible until the caller commits metadata. :class:`ObjectReader` reads an
object's segments from file handles opened up front, so an overwrite or delete that lands
while it streams cannot change what it returns.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import BinaryIO

from silverlining.node import errors
from silverlining.node.domain.checksums import Digests
from silverlining.node.domain.model import ObjectRecord, Segment
from silverlining.node.store.blobs import BlobStore, BlobWriter

READ_CHUNK = 1024 * 1024
#: Objects up to this size keep their bytes in the metadata row (see schema.objects.data).
INLINE_MAX = 64 * 1024


class Ingest:
    """One object's (or part's) incoming bytes. Not thread-safe; used by one request.

    With ``inline`` (a small object of known size), the bytes are kept in memory, at most
    ``INLINE_MAX`` of them, and committed with the metadata; otherwise they go to a blob.
    """

    def __init__(
        self,
        blobs: BlobStore,
        *,
        max_size: int,
        payload_sha256: str | None = None,
        checksum_algorithm: str | None = None,
        inline: bool = False,
    ) -> None:
        self.max_size = min(max_size, INLINE_MAX) if inline else max_size
        self.payload_sha256 = payload_sha256
        self.digests = Digests(
            payload_sha256=payload_sha256 is not None, checksum_algorithm=checksum_algorithm
        )
        self._buffer: bytearray | None = bytearray() if inline else None
        self._writer: BlobWriter | None = None if inline else blobs.writer()

    @property
    def size(self) -> int:
        return self.digests.size

    @property
    def inline(self) -> bool:
        return self._writer is None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.digests.size + len(data) > self.max_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_size))
        self.digests.update(data)
        if self._writer is not None:
            self._writer.write(data)
        else:
            assert self._buffer is not None
            self._buffer += data

    def write_many(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """``write`` for several pieces at once (as received from the socket, not joined):
        one size check, one ``writev``."""
        size = sum(map(len, pieces))
        if self.digests.size + size > self.max_size:
            raise errors.EntityTooLarge(MaxSizeAllowed=str(self.max_size))
        self.digests.update_many(pieces)  # MD5 goes on on the lane thread meanwhile
        if self._writer is not None:
            self._writer.write_many(pieces)
        else:
            assert self._buffer is not None
            for piece in pieces:
                self._buffer += piece

    def etag(self) -> str:
        return f'"{self.digests.md5.hexdigest()}"'

    def verify(self, *, content_md5: str | None, checksum: str | None) -> None:
        """Check the body against what the request declared. Raises the S3 error."""
        if self.payload_sha256 is not None:
            assert self.digests.sha256 is not None
            if self.digests.sha256.hexdigest() != self.payload_sha256.lower():
                raise errors.XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self.payload_sha256,
                    S3ComputedContentSHA256=self.digests.sha256.hexdigest(),
                )
        if content_md5 is not None:
            try:
                declared = base64.b64decode(content_md5, validate=True)
            except (binascii.Error, ValueError):
                raise errors.InvalidDigest(Content_MD5=content_md5) from None
            if len(declared) != 16:
                raise errors.InvalidDigest(Content_MD5=content_md5)
            if declared != self.digests.md5.digest():
                raise errors.BadDigest(
                    ExpectedDigest=content_md5,
                    CalculatedDigest=base64.b64encode(self.digests.md5.digest()).decode(),
                )
        if checksum is not None:
            computed = self.digests.checksum_b64()
            if computed != checksum:
                alg = self.digests.checksum_algorithm or "checksum"
                raise errors.BadDigest(
                    f"The {alg} you specified did not match the calculated checksum."
                )

    def commit(self) -> tuple[tuple[Segment, ...], bytes | None]:
        """Make the bytes durable: fsync and move the blob into place (still unreferenced
        until metadata commits). Returns (segments, inline bytes): one segment, or no
        segment and the bytes to store in the row."""
        if self._writer is None:
            assert self._buffer is not None
            return (), bytes(self._buffer)
        blob_id = self._writer.commit()
        return (Segment(blob_id, self.digests.size),), None

    def discard(self) -> None:
        self.digests.abandon()
        if self._writer is not None:
            self._writer.discard()
        self._buffer = None


class ObjectReader:
    """Reads bytes [first, last] of an object across its segments."""

    def __init__(self, record: ObjectRecord, handles: list[tuple[BinaryIO, int, int]]) -> None:
        self.record = record
        #: (file, offset within that file, bytes to read from it)
        self._handles = handles
        self.length = sum(n for _, _, n in handles)
        self._index = 0

    @classmethod
    def open(cls, blobs: BlobStore, record: ObjectRecord, first: int, last: int) -> ObjectReader:
        """Open the segments covering [first, last]. Raises FileNotFoundError if a blob is
        gone (the object was replaced meanwhile; the caller looks it up again)."""
        if record.data is not None:
            return _InlineReader(record, record.data[first:last + 1])
        handles: list[tuple[BinaryIO, int, int]] = []
        pos = 0
        try:
            for seg in record.segments:
                seg_first, seg_last = pos, pos + seg.size - 1
                pos += seg.size
                if seg.size == 0 or seg_last < first or seg_first > last:
                    continue
                start = max(first, seg_first) - seg_first
                end = min(last, seg_last) - seg_first
                f = blobs.open(seg.blob_id)
                handles.append((f, start, end - start + 1))
        except BaseException:
            for f, _, _ in handles:
                f.close()
            raise
        return cls(record, handles)

    def read(self, max_bytes: int = READ_CHUNK) -> bytes:
        """Up to ``max_bytes`` more bytes; b"" at the end."""
        while self._index < len(self._handles):
            f, offset, remaining = self._handles[self._index]
            if remaining == 0:
                self._index += 1
                continue
            data = _pread(f, min(max_bytes, remaining), offset)
            if not data:
                raise OSError(f"blob of {self.record.key!r} is shorter than its metadata says")
            self._handles[self._index] = (f, offset + len(data), remaining - len(data))
            return data
        return b""

    def close(self) -> None:
        for f, _, _ in self._handles:
            f.close()
        self._handles = []


class _InlineReader(ObjectReader):
    """A reader over a small object's inline bytes."""

    def __init__(self, record: ObjectRecord, data: bytes) -> None:
        super().__init__(record, [])
        self._data: bytes | None = data
        self.length = len(data)

    def read(self, max_bytes: int = READ_CHUNK) -> bytes:
        data, self._data = self._data, None
        return data or b""

    def close(self) -> None:
        self._data = None


def _pread(f: BinaryIO, n: int, offset: int) -> bytes:
    return os.pread(f.fileno(), n, offset)
