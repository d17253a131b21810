"""Ed25519 public keys as an outside verifier holds them: PEM, 32 raw bytes, or a key object.

The log signs with a key it never sees: signing goes through the `Signer` protocol
(the gateway passes its onshore signer), and verification needs the public half only.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PublicKey = bytes | str | Ed25519PublicKey


class InvalidKey(ValueError):
    """Not an Ed25519 public key."""


class Signer(Protocol):
    """What signing a note needs: an Ed25519 signature and the raw 32-byte public key."""

    def sign(self, message: bytes) -> bytes: ...

    def public_key_raw(self) -> bytes: ...


def load_public_key(public_key: PublicKey) -> Ed25519PublicKey:
    """Accept an Ed25519 public key as object, 32 raw bytes, or PEM (bytes or str)."""
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if isinstance(public_key, str):
        public_key = public_key.encode("ascii")
    try:
        data = bytes(public_key)
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        key = serialization.load_pem_public_key(data)
    except (TypeError, ValueError):
        raise InvalidKey("not an Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey("not an Ed25519 public key")
    return key


def public_raw(public_key: PublicKey) -> bytes:
    return load_public_key(public_key).public_bytes_raw()


def fingerprint(public_key: PublicKey) -> str:
    """Hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_raw(public_key)).hexdigest()


def verify_signature(public_key: PublicKey, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `message` (a malformed key raises InvalidKey)."""
    try:
        load_public_key(public_key).verify(bytes(signature), bytes(message))
    except InvalidSignature:
        return False
    return True
