"""A signer for the library's tests: anything with sign() and public_key_raw() will do (translog.keys.Signer)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class TestSigner:
    __test__ = False  # not a test class

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key_raw(self) -> bytes:
        return self._key.public_key().public_bytes_raw()
