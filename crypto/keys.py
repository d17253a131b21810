"""Key-provider protocol, wrapped-key record and the URL factory.

A *key provider* holds key-encryption keys (KEKs) onshore and never lets them out:
it creates per-object data keys (DEKs) and wraps/unwraps them. Providers are chosen
by URL (``local:///abs/path``, ``awskms://arn:...``) through :func:`open_key_provider`.

Every wrapped DEK is a :class:`WrappedKey` that records the provider scheme, the
caller's key id and the KEK version that wrapped it, so rotation and destruction
can always tell which KEK a stored object depends on.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .errors import ConfigurationError, CryptoError, InvalidKeyId

DEFAULT_ONSHORE_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-west-1",
    "us-gov-east-1",
)

# Key ids are caller-chosen (e.g. "rel-12-34", "org-12", "signing"). The charset
# keeps them safe as file names and inside KMS alias names (alias/<prefix>/<id>),
# and excludes "/" so the version suffix "/vN" of an alias is unambiguous.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_KEY_ID_LEN = 64


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is 1-64 chars of [A-Za-z0-9_-] starting alphanumeric."""
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise InvalidKeyId("key id must be 1-64 characters [A-Za-z0-9_-], starting alphanumeric")
    return key_id


class DataKey(bytes):
    """A plaintext 256-bit DEK: plain ``bytes`` whose repr never shows the key."""

    def __repr__(self) -> str:
        return f"DataKey(<redacted {len(self)} bytes>)"

    __str__ = __repr__


_WK_MAGIC = b"PHGW"
_WK_VERSION = 1


@dataclass(frozen=True)
class WrappedKey:
    """A DEK wrapped by a provider KEK, with the metadata needed to unwrap it.

    Serialised by :meth:`to_bytes`: magic "PHGW", format version (1 byte),
    provider scheme (1-byte length + ASCII), key id (1-byte length + ASCII),
    key version (u32 BE), blob (u32 BE length + bytes).
    """

    provider: str
    key_id: str
    key_version: int
    blob: bytes = field(repr=False)
    format_version: int = _WK_VERSION

    def __repr__(self) -> str:
        return (
            f"WrappedKey(provider={self.provider!r}, key_id={self.key_id!r}, "
            f"key_version={self.key_version}, blob=<{len(self.blob)} bytes>)"
        )

    def to_bytes(self) -> bytes:
        p = self.provider.encode("ascii")
        k = self.key_id.encode("ascii")
        return b"".join(
            (
                _WK_MAGIC,
                bytes((self.format_version, len(p))),
                p,
                bytes((len(k),)),
                k,
                struct.pack(">II", self.key_version, len(self.blob)),
                self.blob,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WrappedKey:
        """Parse :meth:`to_bytes` output; raises CryptoError on anything malformed."""
        wk, end = cls._parse(bytes(data), 0)
        if end != len(data):
            raise CryptoError("malformed wrapped key")
        return wk

    @classmethod
    def _parse(cls, data: bytes, off: int) -> tuple[WrappedKey, int]:
        try:
            if data[off : off + 4] != _WK_MAGIC or data[off + 4] != _WK_VERSION:
                raise ValueError
            plen = data[off + 5]
            pos = off + 6
            provider = data[pos : pos + plen].decode("ascii")
            pos += plen
            klen = data[pos]
            key_id = data[pos + 1 : pos + 1 + klen].decode("ascii")
            pos += 1 + klen
            version, blen = struct.unpack_from(">II", data, pos)
            pos += 8
            blob = data[pos : pos + blen]
            if len(blob) != blen or len(provider) != plen or len(key_id) != klen:
                raise ValueError
            validate_key_id(key_id)
        except (ValueError, IndexError, struct.error, UnicodeDecodeError):
            raise CryptoError("malformed wrapped key") from None
        return cls(provider, key_id, version, blob), pos + blen


@dataclass(frozen=True)
class KeyDestruction:
    """Evidence that a key was destroyed, for destruction certificates.

    ``method`` says how (e.g. "local:overwrite-unlink-fsync",
    "awskms:ScheduleKeyDeletion"); ``deletion_scheduled_for`` is when the material is
    gone for good (equal to ``destroyed_at`` for the local keyring, the end of the
    pending window for KMS); ``versions`` lists every KEK version destroyed.
    """

    key_id: str
    provider: str
    method: str
    destroyed_at: datetime
    deletion_scheduled_for: datetime
    pending_window_days: int
    versions: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "provider": self.provider,
            "method": self.method,
            "destroyed_at": self.destroyed_at.isoformat(),
            "deletion_scheduled_for": self.deletion_scheduled_for.isoformat(),
            "pending_window_days": self.pending_window_days,
            "versions": list(self.versions),
        }


@runtime_checkable
class KeyProvider(Protocol):
    """Onshore custody of KEKs. Implementations: LocalKeyring, AwsKmsProvider."""

    scheme: str

    def ensure_key(self, key_id: str) -> int:
        """Create the key if missing (idempotent); return its current version."""
        ...

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[DataKey, WrappedKey]:
        """Fresh 256-bit DEK and the same DEK wrapped under the key's newest version."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> DataKey:
        """Plaintext DEK, or DecryptionError / KeyDestroyed / KeyNotFound."""
        ...

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        """Re-wrap a DEK under the key's newest version (object data untouched)."""
        ...

    def rotate(self, key_id: str) -> int:
        """Add a new KEK version for new writes; old versions still unwrap. Returns it."""
        ...

    def current_version(self, key_id: str) -> int:
        """Newest version of the key."""
        ...

    def destroy_key(self, key_id: str) -> KeyDestruction:
        """Destroy every version of the key; returns evidence."""
        ...

    def key_ids(self) -> list[str]:
        """Ids of keys that exist and are not destroyed."""
        ...

    def check(self) -> None:
        """Readiness probe; raises CryptoError if the provider is unusable."""
        ...

    def put_blob(self, name: str, data: bytes) -> None:
        """Store a small already-sealed blob with the keys (e.g. the signing key)."""
        ...

    def get_blob(self, name: str) -> bytes | None:
        """Return a blob stored by put_blob, or None."""
        ...


def open_key_provider(
    url: str,
    *,
    onshore_regions: Sequence[str] = DEFAULT_ONSHORE_REGIONS,
    pending_window_days: int | None = None,
    kms_client: object | None = None,
    kms_timeouts: tuple[float, float, int] | None = None,
) -> KeyProvider:
    """Open the key provider named by ``url``.

    * ``local:///abs/path``: onshore keyring directory made by :func:`init_keyring`.
    * ``awskms://arn:aws:kms:REGION:ACCOUNT:alias/PREFIX[?endpoint_url=...&pending_window_days=N]``:
      one KMS key per key id behind ``alias/PREFIX/<key_id>``; REGION must be in
      ``onshore_regions`` or ResidencyError is raised before any network call.
      ``kms_timeouts`` is (connect seconds, read seconds, attempts per call): a key
      service that hangs fails the call with ProviderUnavailable within that bound.
    """
    if not isinstance(url, str):
        raise ConfigurationError("key provider URL must be a string")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "local":
        from .local import LocalKeyring

        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ConfigurationError("local key provider URL must be local:///absolute/path")
        return LocalKeyring(parts.path)
    if scheme == "awskms":
        from .kms import AwsKmsProvider

        timeouts: dict[str, Any] = {}
        if kms_timeouts is not None:
            timeouts = dict(zip(("connect_timeout", "read_timeout", "max_attempts"), kms_timeouts, strict=True))
        return AwsKmsProvider.from_url(
            url,
            onshore_regions=tuple(onshore_regions),
            pending_window_days=pending_window_days,
            client=kms_client,
            **timeouts,
        )
    raise ConfigurationError("unsupported key provider URL scheme (use local:// or awskms://)")
