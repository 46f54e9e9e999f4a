"""The node's signing identity: an Ed25519 key that signs usage records.

The private key lives in the data directory (``node-signing.key``, PKCS#8 PEM, mode 0600 from
the moment it is created) and is generated on first start. Whoever pulls usage records pins
the public key from ``GET /federation/identity`` and checks every batch against it.

Signatures cover the *canonical JSON* of the signed document: keys sorted, ``,``/``:``
separators, UTF-8 without escapes, no floats (every quantity is an integer-valued string), so
any language re-serialises it to the same bytes (the same form as Core's signed reports).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from silverlining.canonical import canonical_json

KEY_FILE = "node-signing.key"
#: Namespace for ids derived from the node's public key (service and default plan ids).
_ID_NAMESPACE = uuid.UUID("6f0d3c9e-2a55-4b8c-9a49-5e1b7b1f0c3a")






class NodeIdentity:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        #: The raw 32-byte public key, base64.
        self.public_key = base64.b64encode(raw).decode("ascii")
        #: ``SHA256:<unpadded base64>`` of the raw public key (OpenSSH's style).
        self.fingerprint = "SHA256:" + base64.b64encode(
            hashlib.sha256(raw).digest()
        ).decode("ascii").rstrip("=")

    @classmethod
    def load_or_create(cls, data_dir: Path) -> NodeIdentity:
        path = data_dir / KEY_FILE
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pem = path.read_bytes()  # another process won the race: use its key
            else:
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise RuntimeError(f"{path} is not a PEM private key: {exc}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise RuntimeError(f"{path} is not an Ed25519 private key")
        return cls(loaded)

    def sign(self, document: Any) -> str:
        """Base64 Ed25519 signature over ``canonical_json(document)``."""
        return base64.b64encode(self._key.sign(canonical_json(document))).decode("ascii")

    def derived_id(self, name: str) -> str:
        """A UUID that is stable for this node and unique to it (OSB wants globally unique
        service and plan ids: two nodes must never offer the same id)."""
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.public_key}/{name}"))
