"""One exception family for the crypto package.

Every class carries a stable ``code`` so the gateway's single error handler can map
it to a response without parsing messages. Messages never contain key material,
plaintext or which integrity check failed.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by ``crypto``."""

    code = "crypto.error"


class DecryptionError(CryptoError):
    """Integrity failure: wrong key, wrong context, tampering, truncation, reordering.

    Deliberately one class with one message: telling an attacker *which* check
    failed (header, commitment, a segment tag, the final-segment flag) turns the
    decryptor into an oracle.
    """

    code = "crypto.decryption_failed"

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class KeyNotFound(CryptoError):
    """The key id does not exist in the provider."""

    code = "crypto.key_not_found"


class KeyDestroyed(KeyNotFound):
    """The key was destroyed (or is pending deletion): nothing under it decrypts again."""

    code = "crypto.key_destroyed"


class InvalidKeyId(CryptoError, ValueError):
    """A key id outside the allowed charset or length."""

    code = "crypto.invalid_key_id"


class InvalidContext(CryptoError, ValueError):
    """An encryption context that is not a mapping of non-empty str to str."""

    code = "crypto.invalid_context"


class ResidencyError(CryptoError):
    """The key provider is outside the allowed onshore regions; refused at start."""

    code = "crypto.residency_violation"


class ProviderUnavailable(CryptoError):
    """The key provider cannot be reached or refused the request."""

    code = "crypto.provider_unavailable"


class ConfigurationError(CryptoError, ValueError):
    """A key-provider URL or option that cannot be used."""

    code = "crypto.configuration"
