"""Canonical JSON, hashes and the key that signs each batch's chain head.

Why Ed25519 derived from the server secret (HKDF, own label) rather than HMAC(secret_key):
- anyone can check a head signature with the published public key (GET /api/trace/public-key):
  a buyer, an auditor or a regulator verifies offline without holding a key that could also forge;
  with HMAC the verifier must hold the very secret that signs (and that mints login tokens);
- derivation keeps one secret to manage: every worker process agrees with no key file to copy, and
  backing up LINLI_SECRET_KEY (already required for tokens) is enough to keep old signatures valid;
- the HKDF label separates the signing key from the JWT key, so one never helps attack the other.
The key id (first 16 hex of SHA-256 of the public key) is stored with each signed head, so after a
secret rotation verify says "signed by another key" instead of "tampered".
"""

from __future__ import annotations

import hashlib
import json
from base64 import b64decode, b64encode
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from commerce.base import as_utc

HKDF_INFO = b"linli trace head signing key v1"
GENESIS_PREFIX = "linli-trace-v1"


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8. Floats use Python's shortest repr."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def iso(value: datetime | None) -> str | None:
    """Times enter hashes in one form: UTC, microseconds (SQLite hands back naive values)."""
    if value is None:
        return None
    return as_utc(value).astimezone(UTC).isoformat(timespec="microseconds")


class TraceSigner:
    """Signs `(batch code, seq, head hash)`; verification needs only the public key."""

    def __init__(self, secret_key: str) -> None:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
            secret_key.encode("utf-8")
        )
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key: Ed25519PublicKey = self._private.public_key()
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key_b64 = b64encode(raw).decode("ascii")
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @staticmethod
    def message(batch_code: str, seq: int, head_hash: str) -> bytes:
        return canonical_json({"v": 1, "batch": batch_code, "seq": seq, "head": head_hash})

    def sign(self, batch_code: str, seq: int, head_hash: str) -> str:
        return b64encode(self._private.sign(self.message(batch_code, seq, head_hash))).decode("ascii")

    def verify(self, batch_code: str, seq: int, head_hash: str, signature: str) -> bool:
        try:
            self.public_key.verify(b64decode(signature), self.message(batch_code, seq, head_hash))
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_dict(self) -> dict[str, str]:
        pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        return {"algorithm": "Ed25519", "key_id": self.key_id, "public_key": self.public_key_b64,
                "pem": pem, "signed_message": 'canonical JSON {"batch","head","seq","v":1}'}
