"""Deterministic, position-addressable test data that never has to be held in memory whole."""

from __future__ import annotations

import hashlib
import io
import random

BLOCK = 1024 * 1024


class PatternStream(io.RawIOBase):
    """``length`` bytes of seeded pseudo-random data, readable and seekable like a file.

    Byte ``i`` depends only on ``seed`` and ``i``, so any range can be produced again to check a
    download against, and memory stays at one block whatever the length.
    """

    def __init__(self, seed: str, length: int, start: int = 0) -> None:
        super().__init__()
        self._seed = seed
        self._start = start
        self._length = length
        self._position = 0
        self._block_index = -1
        self._block = b""

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        return self._position

    def _block_at(self, index: int) -> bytes:
        if index != self._block_index:
            digest = hashlib.sha256(f"{self._seed}/{index}".encode()).digest()
            self._block = random.Random(digest).randbytes(BLOCK)
            self._block_index = index
        return self._block

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._length - self._position)
        filled = 0
        while filled < wanted:
            absolute = self._start + self._position
            index, offset = divmod(absolute, BLOCK)
            piece = self._block_at(index)[offset : offset + wanted - filled]
            buffer[filled : filled + len(piece)] = piece
            filled += len(piece)
            self._position += len(piece)
        return filled


def pattern_bytes(seed: str, start: int, length: int) -> bytes:
    """The bytes ``[start, start + length)`` of the pattern ``seed``."""
    return PatternStream(seed, length, start).read()
