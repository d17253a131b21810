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
    "DEFAULT_ONSHORE_REGIONS",
    "HEADER_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "SEGMENT_SIZE",
    "ConfigurationError",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "InvalidContext",
    "InvalidKeyId",
    "InvalidRange",
    "KeyDestroyed",
    "KeyDestruction",
    "KeyNotFound",
    "KeyProvider",
    "ProviderUnavailable",
    "ResidencyError",
    "SegmentCipher",
    "Signer",
    "SingleHostKeyringWarning",
    "WrappedKey",
    "canonical_context",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "fingerprint",
    "init_keyring",
    "load_public_key",
    "max_plaintext_size",
    "open_key_provider",
    "plaintext_size",
    "reseal",
    "seal",
    "sealed_key_info",
    "unseal",
    "validate_key_id",
    "verify",
    "verify_signature",
]
