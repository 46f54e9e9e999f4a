"""The node key: encrypts access-key secrets at rest (AES-256-GCM).

A copy of the metadata database alone does not let anyone sign requests; the key file
(``node.key``, mode 0600) lives beside it in the data directory and is backed up separately
by a careful operator.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "node.key"


class Keyring:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Keyring:
        path = data_dir / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = AESGCM.generate_key(bit_length=256)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            # Another process may have won the race; use whatever is on disk.
            key = path.read_bytes()
        if len(key) != 32:
            raise RuntimeError(f"{path} is not a valid node key (expected 32 bytes)")
        return cls(key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        return self._aead.decrypt(blob[:12], blob[12:], context.encode()).decode()
