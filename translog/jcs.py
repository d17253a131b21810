"""RFC 8785 JSON Canonicalization Scheme: the one form in which new formats sign or hash JSON.

JCS is ECMAScript's JSON.stringify with object members sorted by their UTF-16 code
units, so a verifier in any language reproduces it with a few lines (docs/audit.md,
docs/destruction-certificate.md) and in JavaScript with the built-ins alone.
Numbers are IEEE 754 doubles: an integer beyond 2**53 cannot be canonicalised and
raises, as do NaN and infinities.
"""

from __future__ import annotations

import rfc8785


class NotCanonicalisable(ValueError):
    """A value outside JCS's domain (integer beyond 2**53, NaN, a non-JSON type, a lone surrogate)."""


def canonical(value: object) -> bytes:
    """The RFC 8785 serialisation of `value` (UTF-8 bytes)."""
    try:
        return rfc8785.dumps(value)  # type: ignore[arg-type]  # any JSON value; others raise
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise NotCanonicalisable(str(exc)) from None
