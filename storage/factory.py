"""``open_object_store(url)``: the one way to get an ObjectStore.

``file:///abs/path``
    Local directory (embedded default). Query: ``verify_reads=true|false``.
``s3://bucket?region=us-east-1``
    AWS S3. Query parameters (all optional except as noted):

    ``region``            the bucket's region (required with ``endpoint_url``)
    ``endpoint_url``      an S3-compatible endpoint (MinIO, Ceph RGW): ``http(s)://host:port``
    ``endpoint_onshore``  ``true`` declares that custom endpoint onshore (or pass
                          ``onshore_endpoints=`` to the factory)
    ``part_size``         bytes or ``8MiB`` / ``1GiB`` (5 MiB .. 5 GiB; default 8 MiB)
    ``sse``               ``AES256`` | ``aws:kms`` | ``aws:kms:dsse``
    ``sse_kms_key_id``    KMS key id/ARN for ``sse=aws:kms``
    ``retry_mode``        ``standard`` (default) | ``adaptive``
    ``max_attempts``      botocore attempts per request (default 10)
    ``part_retries``      extra attempts of a part upload / download resume (default 2)
    ``addressing_style``  ``path`` | ``virtual`` | ``auto``
    ``connect_timeout``, ``read_timeout``  seconds

Unknown parameters are refused, so a typo (``sse_kms_keyid``) cannot silently drop
a protection. Credentials never go in the URL: boto3's usual chain supplies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError
from .local import LocalObjectStore
from .s3 import DEFAULT_ONSHORE_REGIONS, S3ObjectStore
from .types import ObjectStore

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SIZE_RE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``"8MiB"`` -> 8388608; plain digits are bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        raise ConfigurationError("size must be bytes or a number with KiB/MiB/GiB")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]


def _bool(name: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false")


def _query(query: str) -> dict[str, str]:
    parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    out = {}
    for name, values in parsed.items():
        if len(values) != 1:
            raise ConfigurationError(f"store URL parameter {name} given more than once")
        out[name] = values[0]
    return out


def open_object_store(
    url: str,
    *,
    onshore_regions: Iterable[str] = DEFAULT_ONSHORE_REGIONS,
    onshore_endpoints: Iterable[str] = (),
    session: Any = None,
    **overrides: Any,
) -> ObjectStore:
    """Open the store named by ``url``; S3 stores check residency before returning.

    ``overrides`` are backend keyword arguments that win over the URL (e.g.
    ``part_size=5 * 1024 * 1024`` in tests).
    """
    parts = urlsplit(url)
    params = _query(parts.query)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError("file:// store URL must be file:///absolute/path")
        path = unquote(parts.path)
        local_args: dict[str, Any] = {}
        for name, value in params.items():
            if name == "verify_reads":
                local_args[name] = _bool(name, value)
            else:
                raise ConfigurationError(f"unknown file:// store parameter {name}")
        local_args.update(overrides)
        return LocalObjectStore(path, **local_args)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if parts.path not in ("", "/"):
            raise ConfigurationError("s3:// store URL must be s3://bucket?params (no key prefix)")
        args: dict[str, Any] = {}
        for name, value in params.items():
            if name in ("region", "endpoint_url", "sse", "sse_kms_key_id", "retry_mode", "addressing_style"):
                args[name] = value or None
            elif name == "part_size":
                args[name] = parse_size(value)
            elif name in ("max_attempts", "part_retries"):
                try:
                    args[name] = int(value)
                except ValueError:
                    raise ConfigurationError(f"{name} must be an integer") from None
            elif name in ("connect_timeout", "read_timeout"):
                try:
                    args[name] = float(value)
                except ValueError:
                    raise ConfigurationError(f"{name} must be a number") from None
            elif name == "endpoint_onshore":
                args[name] = _bool(name, value)
            else:
                raise ConfigurationError(f"unknown s3:// store parameter {name}")
        args.update(overrides)
        return S3ObjectStore(
            bucket,
            onshore_regions=tuple(onshore_regions),
            onshore_endpoints=tuple(onshore_endpoints),
            session=session,
            **args,
        )
    raise ConfigurationError("store URL scheme must be file:// or s3://")
