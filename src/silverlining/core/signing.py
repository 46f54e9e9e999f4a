"""Ed25519 keys, signed reports, and their verification.

A signed report carries two extra members:

* ``signer``: ``{"algorithm": "ed25519", "public_key": <base64 raw 32 bytes>,
  "fingerprint": "SHA256:<base64 of SHA-256 of the raw key, unpadded>", "signed_at": <UTC>}``
* ``signature``: base64 Ed25519 signature over the canonical JSON of the whole document
  *without* the ``signature`` member (so the signer block, the results and their hash are all
  covered).

Anyone can check a report with the public key it embeds; pinning the expected signer
(``verify --signer``) is what makes a re-signed report fail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from silverlining.canonical import canonical_json
from silverlining.core.report import (
    REPORT_FORMAT,
    iso,
    results_hash,
    verdict_from_document,
)


class KeyFileError(Exception):
    """A key file cannot be written or read; the message says which and why."""


class NotAReport(Exception):
    """The document is not a Core report at all."""


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:...`` over the raw public key (OpenSSH's fingerprint style)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")


def generate_key(path: Path, *, overwrite: bool = False) -> Ed25519PrivateKey:
    """Write a new Ed25519 private key to ``path`` as PKCS#8 PEM, readable by its owner only.

    The file is created with mode 0600 from the start (never world-readable, even briefly) and
    an existing file is never replaced unless ``overwrite``.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists (use --force to replace it)") from None
    except OSError as error:
        raise KeyFileError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # O_TRUNC keeps an old file's mode
        handle.write(pem)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by :func:`generate_key` (or any PEM PKCS#8 one)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 raw bytes (what keygen prints) or a PEM file's text."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped.encode())
        except ValueError as error:
            raise ValueError(f"not a PEM public key: {error}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_document(
    document: dict[str, Any], key: Ed25519PrivateKey, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """A copy of a report document with ``signer`` and ``signature`` added."""
    signed = {k: v for k, v in document.items() if k not in ("signer", "signature")}
    signed["results_sha256"] = results_hash(signed["checks"])
    public = key.public_key()
    signed["signer"] = {
        "algorithm": "ed25519",
        "public_key": public_key_text(public),
        "fingerprint": fingerprint(public),
        "signed_at": iso(now or dt.datetime.now(dt.UTC)),
    }
    signature = key.sign(canonical_json(signed))
    signed["signature"] = base64.b64encode(signature).decode("ascii")
    return signed


@dataclass
class Verification:
    """What :func:`verify_document` established. ``valid`` only if ``problems`` is empty."""

    problems: list[str] = field(default_factory=list)
    fingerprint: str | None = None
    public_key: str | None = None
    signed_at: str | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


def verify_document(
    document: Any, *, expected_signer: Ed25519PublicKey | str | None = None
) -> Verification:
    """Check a report's hash, verdict and signature; pin the signer if ``expected_signer``.

    ``expected_signer`` is a public key or a ``SHA256:`` fingerprint. Raises
    :class:`NotAReport` when the document is not a Core report at all.
    """
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise NotAReport(f"not a Silver Lining Core report (expected format {REPORT_FORMAT!r})")
    result = Verification()
    checks = document.get("checks")
    if not isinstance(checks, list):
        result.problems.append("the report has no list of checks")
        return result
    try:
        if document.get("results_sha256") != results_hash(checks):
            result.problems.append("the results do not match their hash (results_sha256)")
    except ValueError as error:
        result.problems.append(f"the results cannot be serialised canonically: {error}")
    try:
        recomputed = verdict_from_document(document).to_dict()
        if recomputed != document.get("verdict"):
            result.problems.append("the verdict does not follow from the results")
    except (KeyError, ValueError, TypeError) as error:
        result.problems.append(f"the results are malformed: {error!r}")

    signer = document.get("signer")
    signature = document.get("signature")
    if not isinstance(signer, dict) or not isinstance(signature, str):
        result.problems.append("the report is not signed (no signer or signature)")
        return result
    result.signed_at = str(signer.get("signed_at"))
    if signer.get("algorithm") != "ed25519":
        result.problems.append(f"unknown signature algorithm {signer.get('algorithm')!r}")
        return result
    try:
        public = parse_public_key(str(signer.get("public_key", "")))
    except ValueError as error:
        result.problems.append(f"the signer's public key is unusable: {error}")
        return result
    result.public_key = public_key_text(public)
    result.fingerprint = fingerprint(public)
    if signer.get("fingerprint") != result.fingerprint:
        result.problems.append("the signer's fingerprint does not match its public key")
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    try:
        public.verify(base64.b64decode(signature, validate=True), canonical_json(unsigned))
    except (InvalidSignature, binascii.Error, ValueError):
        result.problems.append(
            "the signature does not match the report (edited, or signed by another key)"
        )
    if expected_signer is not None:
        wanted = (
            expected_signer if isinstance(expected_signer, str) else fingerprint(expected_signer)
        )
        if wanted != result.fingerprint:
            result.problems.append(
                f"signed by {result.fingerprint}, not by the expected signer {wanted}"
            )
    return result
