"""Object key validation.

Keys are opaque ids chosen by the caller (never derived from user input). Every
backend validates them anyway, because a key becomes a file name in the local
backend and a URL path in S3: a key that could escape the store root, collide with
the local backend's temp files, or need URL escaping is refused outright.

Accepted: one to ``MAX_KEY_LENGTH`` ASCII characters, ``/``-separated segments,
each segment matching ``[A-Za-z0-9][A-Za-z0-9._-]*``. So no empty segment, no
leading or trailing ``/`` (hence no absolute path), no ``.``/``..`` segment (a
segment cannot start with a dot), no backslash, NUL, space or non-ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import InvalidMetadata, InvalidObjectKey

MAX_KEY_LENGTH = 200
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
# Metadata travels as HTTP headers on S3 (x-amz-meta-*), so keep to a portable subset.
_META_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_META_VALUE_RE = re.compile(r"[\x20-\x7e]*")
MAX_METADATA_BYTES = 2048  # S3's limit on user-defined metadata


def validate_key(key: object) -> str:
    """Return ``key`` if it is an acceptable object key, else raise InvalidObjectKey."""
    if not isinstance(key, str):
        raise InvalidObjectKey(f"object key must be str, not {type(key).__name__}")
    if not key:
        raise InvalidObjectKey("object key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(f"object key longer than {MAX_KEY_LENGTH} characters")
    # fullmatch and re.ASCII semantics: [A-Za-z0-9] never matches a newline or Unicode digit.
    if _KEY_RE.fullmatch(key) is None:
        # Do not echo the key: a rejected key may be garbage, or worse, user input.
        raise InvalidObjectKey("object key must be '/'-separated segments of [A-Za-z0-9][A-Za-z0-9._-]*")
    return key


def validate_prefix(prefix: object) -> str:
    """A list prefix: empty, or any leading part of a valid key (may end with '/')."""
    if not isinstance(prefix, str):
        raise InvalidObjectKey(f"prefix must be str, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(f"prefix longer than {MAX_KEY_LENGTH} characters")
    body = prefix[:-1] if prefix.endswith("/") else prefix
    if _KEY_RE.fullmatch(body) is None:
        raise InvalidObjectKey("prefix must be the beginning of a valid object key")
    return prefix


def validate_metadata(metadata: object) -> dict[str, str]:
    """Return a copy of ``metadata`` if it fits the portable subset, else raise."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("metadata must be a mapping of str to str")
    total = 0
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or _META_NAME_RE.fullmatch(name) is None:
            raise InvalidMetadata("metadata names must match [a-z0-9][a-z0-9-]{0,63}")
        if not isinstance(value, str) or _META_VALUE_RE.fullmatch(value) is None:
            raise InvalidMetadata(f"metadata value for {name!r} must be printable ASCII")
        total += len(name) + len(value)
        out[name] = value
    if total > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"metadata larger than {MAX_METADATA_BYTES} bytes")
    return out
