"""Ed25519 signing key held by the key provider (destruction certificates, audit checkpoints).

The private key never exists at rest in the clear: its 32-byte seed is sealed
(:func:`crypto.seal.seal`) under the provider key id ``signing`` and stored with
the provider (:meth:`KeyProvider.put_blob`). The public key is exportable as PEM
and raw bytes; its fingerprint is the hex SHA-256 of the raw public key.
:func:`verify_signature` needs no provider, so third parties can verify.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import CryptoError
from .keys import KeyProvider
from .seal import seal, unseal

SIGNING_KEY_ID = "signing"
_SEAL_CONTEXT = {"purpose": "phigate-signing-key", "algorithm": "ed25519"}


class Signer:
    """An Ed25519 private key; repr shows only the public fingerprint."""

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str = SIGNING_KEY_ID) -> None:
        self._sk = private_key
        self.key_id = key_id
        self._pk_raw = private_key.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, fingerprint={self.fingerprint()[:16]}…)"

    @classmethod
    def load_or_create(cls, provider: KeyProvider, key_id: str = SIGNING_KEY_ID) -> Signer:
        """Load the sealed signing key from ``provider``, creating it on first use."""
        blob = provider.get_blob(key_id)
        if blob is None:
            provider.ensure_key(key_id)
            raw = Ed25519PrivateKey.generate().private_bytes_raw()
            provider.put_blob(key_id, seal(provider, key_id, raw, _SEAL_CONTEXT))
            # Re-read: if another replica created one concurrently, last write wins
            # and every caller converges on the stored key.
            blob = provider.get_blob(key_id)
            if blob is None:
                raise CryptoError("signing key could not be stored")
        return cls(Ed25519PrivateKey.from_private_bytes(unseal(provider, blob, _SEAL_CONTEXT)), key_id)

    def sign(self, message: bytes) -> bytes:
        """64-byte Ed25519 signature of ``message``."""
        return self._sk.sign(bytes(message))

    def public_key(self) -> Ed25519PublicKey:
        return self._sk.public_key()

    def public_key_raw(self) -> bytes:
        return self._pk_raw

    def public_key_pem(self) -> bytes:
        return self._sk.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def fingerprint(self) -> str:
        return fingerprint(self._pk_raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return verify_signature(self._pk_raw, message, signature)


def load_public_key(public_key: bytes | str | Ed25519PublicKey) -> Ed25519PublicKey:
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
        raise CryptoError("not an Ed25519 public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CryptoError("not an Ed25519 public key")
    return key


def fingerprint(public_key: bytes | str | Ed25519PublicKey) -> str:
    """Hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(load_public_key(public_key).public_bytes_raw()).hexdigest()


def verify_signature(public_key: bytes | str | Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message``; no provider needed.

    A malformed public key raises CryptoError; a wrong signature returns False.
    """
    key = load_public_key(public_key)
    try:
        key.verify(bytes(signature), bytes(message))
    except InvalidSignature:
        return False
    return True


verify = verify_signature
