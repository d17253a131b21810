"""Deterministic canonical encoding of an encryption context.

The context (e.g. ``{"tenant": "1", "object": "abc"}``) is bound into every
ciphertext as associated data, so the same mapping must always encode to the same
bytes and two different mappings must never collide. Encoding: a 4-byte big-endian
count, then for each pair sorted by key: 4-byte length + UTF-8 key, 4-byte length +
UTF-8 value. Length prefixes make the encoding injective (no separator tricks).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from .errors import InvalidContext

# Keys starting with these prefixes are reserved: "aws" by KMS, "phigate:" by us
# (providers add e.g. "phigate:key_id" to the KMS EncryptionContext).
RESERVED_PREFIXES = ("aws", "phigate:")
MAX_CONTEXT_ITEMS = 32
MAX_CONTEXT_BYTES = 4096


def validate_context(context: Mapping[str, str]) -> dict[str, str]:
    """Return a plain dict copy of ``context`` after checking its shape."""
    if not isinstance(context, Mapping):
        raise InvalidContext("encryption context must be a mapping of str to str")
    if len(context) > MAX_CONTEXT_ITEMS:
        raise InvalidContext("encryption context has too many entries")
    out: dict[str, str] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise InvalidContext("encryption context must map non-empty str to str")
        if key.lower().startswith(RESERVED_PREFIXES):
            raise InvalidContext("encryption context key uses a reserved prefix")
        out[key] = value
    return out


def canonical_context(context: Mapping[str, str]) -> bytes:
    """Injective, order-independent byte encoding of ``context``."""
    ctx = validate_context(context)
    parts = [struct.pack(">I", len(ctx))]
    for key in sorted(ctx):
        kb = key.encode("utf-8")
        vb = ctx[key].encode("utf-8")
        parts.append(struct.pack(">I", len(kb)))
        parts.append(kb)
        parts.append(struct.pack(">I", len(vb)))
        parts.append(vb)
    encoded = b"".join(parts)
    if len(encoded) > MAX_CONTEXT_BYTES:
        raise InvalidContext("encryption context too large")
    return encoded
