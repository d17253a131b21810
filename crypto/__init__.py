"""PHI Gate crypto: envelope encryption with onshore key custody.

Public API (everything else is private):

* key custody: :func:`open_key_provider` (``local://``, ``awskms://``),
  :func:`init_keyring`, :class:`KeyProvider`, :class:`WrappedKey`,
  :class:`KeyDestruction`
* objects: :func:`encrypt_stream`, :func:`decrypt_stream`, :func:`decrypt_range`,
  :func:`ciphertext_size`, :func:`plaintext_size`, :data:`SEGMENT_SIZE`
* small values: :func:`seal`, :func:`unseal`
* signatures: :class:`Signer`, :func:`verify_signature`
* errors: :class:`CryptoError` and subclasses.

See docs/encrypted-object-format.md and docs/key-custody.md. This package imports
nothing from the gateway or storage.
"""

from .context import canonical_context
from .errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    InvalidContext,
    InvalidKeyId,
    KeyDestroyed,
    KeyNotFound,
    ProviderUnavailable,
    ResidencyError,
)
from .keys import (
    DEFAULT_ONSHORE_REGIONS,
    DataKey,
    KeyDestruction,
    KeyProvider,
    WrappedKey,
    open_key_provider,
    validate_key_id,
)
from .local import SingleHostKeyringWarning, init_keyring
from .seal import reseal, seal, sealed_key_info, unseal
from .signing import Signer, fingerprint, load_public_key, verify, verify_signature
from .stream import (
    HEADER_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    SEGMENT_SIZE,
    InvalidRange,
    SegmentCipher,
    ciphertext_size,
    decrypt_bytes,
    decrypt_range,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    max_plaintext_size,
    plaintext_size,
)

__all__ = [
    "CryptoError", "DecryptionError", "KeyDestroyed", "KeyNotFound", "ResidencyError",
    "InvalidKeyId", "InvalidContext", "ProviderUnavailable", "ConfigurationError", "InvalidRange",
    "KeyProvider", "WrappedKey", "KeyDestruction", "DataKey", "open_key_provider", "init_keyring",
    "validate_key_id", "DEFAULT_ONSHORE_REGIONS", "SingleHostKeyringWarning",
    "encrypt_stream", "decrypt_stream", "SegmentCipher", "decrypt_range", "encrypt_bytes", "decrypt_bytes",
    "ciphertext_size", "plaintext_size", "max_plaintext_size",
    "SEGMENT_SIZE", "MIN_SEGMENT_SIZE", "MAX_SEGMENT_SIZE", "HEADER_SIZE",
    "seal", "unseal", "reseal", "sealed_key_info",
    "Signer", "verify_signature", "verify", "fingerprint", "load_public_key",
    "canonical_context",
]
