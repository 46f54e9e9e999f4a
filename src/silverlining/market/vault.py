"""Secrets at rest: providers' broker passwords and buyers' secret keys, sealed with
AES-256-GCM under the market key (``market.key``, mode 0600, in the data directory).

A copy of the database alone reveals no secret. Several market processes sharing one
PostgreSQL database must share the key file too (copy it; see docs/market.md).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "market.key"


class VaultError(Exception):
    """A sealed value cannot be opened: the key file is not the one that sealed it."""


class Vault:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Vault:
        path = data_dir / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, AESGCM.generate_key(bit_length=256))
                os.fsync(fd)
            finally:
                os.close(fd)
            key = path.read_bytes()
        if len(key) != 32:
            raise VaultError(f"{path} is not a market key (expected 32 bytes)")
        return cls(key)

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted and bound to ``context`` (a row's identity), as text."""
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return base64.b64encode(sealed).decode("ascii")

    def open(self, sealed: str, context: str) -> str:
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultError(
                "a stored secret cannot be decrypted: is this the market.key that sealed it?"
            ) from None
