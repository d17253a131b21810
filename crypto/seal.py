"""Small-value sealing (TOTP secrets, encrypted file names).

``seal`` makes a self-describing blob with a fresh DEK from the provider::

    "PHGB" | version (1) | u32 wrapped-key length | WrappedKey.to_bytes() |
    nonce (12) | AES-256-GCM ciphertext || tag (16)

The associated data is a label, everything before the
nonce (so the wrapped key and its provider/key-version metadata are authenticated)
and the canonical context. The context is also bound into the DEK wrapping.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .context import canonical_context
from .errors import CryptoError, DecryptionError
from .keys import KeyProvider, WrappedKey

MAGIC = b"PHGB"
FORMAT_VERSION = 1
_AAD_LABEL = b"phigate/seal/v1"
_NONCE = 12
MAX_SEALED_PLAINTEXT = 1 << 20  # small values only; use encrypt_stream for files


def seal(provider: KeyProvider, key_id: str, plaintext: bytes, context: Mapping[str, str]) -> bytes:
    """Encrypt a small value under a fresh DEK wrapped by ``key_id``; context-bound."""
    if len(plaintext) > MAX_SEALED_PLAINTEXT:
        raise CryptoError("value too large to seal; use encrypt_stream")
    ctx = canonical_context(context)
    dek, wrapped = provider.generate_data_key(key_id, context)
    wk = wrapped.to_bytes()
    head = MAGIC + bytes((FORMAT_VERSION,)) + struct.pack(">I", len(wk)) + wk
    nonce = os.urandom(_NONCE)
    return head + nonce + AESGCM(dek).encrypt(nonce, bytes(plaintext), _AAD_LABEL + head + ctx)


def sealed_key_info(blob: bytes) -> WrappedKey:
    """The WrappedKey inside a sealed blob (to find blobs needing rewrap)."""
    return _parse(blob)[1]


def _parse(blob: bytes) -> tuple[bytes, WrappedKey, bytes, bytes]:
    blob = bytes(blob)
    if len(blob) < 9 or blob[:4] != MAGIC or blob[4] != FORMAT_VERSION:
        raise DecryptionError()
    (wlen,) = struct.unpack_from(">I", blob, 5)
    end = 9 + wlen
    if len(blob) < end + _NONCE + 16:
        raise DecryptionError()
    try:
        wrapped = WrappedKey.from_bytes(blob[9:end])
    except CryptoError:
        raise DecryptionError() from None
    return blob[:end], wrapped, blob[end : end + _NONCE], blob[end + _NONCE :]


def unseal(provider: KeyProvider, blob: bytes, context: Mapping[str, str]) -> bytes:
    """Inverse of :func:`seal`; DecryptionError on any tampering or wrong context."""
    ctx = canonical_context(context)
    head, wrapped, nonce, ct = _parse(blob)
    dek = provider.unwrap(wrapped, context)
    try:
        return AESGCM(dek).decrypt(nonce, ct, _AAD_LABEL + head + ctx)
    except InvalidTag:
        raise DecryptionError() from None


def reseal(provider: KeyProvider, blob: bytes, context: Mapping[str, str]) -> bytes:
    """Re-wrap a sealed blob's DEK to the key's newest version; ciphertext unchanged in meaning."""
    ctx = canonical_context(context)
    head, wrapped, nonce, ct = _parse(blob)
    dek = provider.unwrap(wrapped, context)
    try:
        plaintext = AESGCM(dek).decrypt(nonce, ct, _AAD_LABEL + head + ctx)
    except InvalidTag:
        raise DecryptionError() from None
    # The AAD covers the wrapped key, so a new wrapping needs a new AEAD pass.
    new_wk = provider.rewrap(wrapped, context).to_bytes()
    new_head = MAGIC + bytes((FORMAT_VERSION,)) + struct.pack(">I", len(new_wk)) + new_wk
    nonce = os.urandom(_NONCE)
    return new_head + nonce + AESGCM(dek).encrypt(nonce, plaintext, _AAD_LABEL + new_head + ctx)
