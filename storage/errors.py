"""The storage exception family.

Backends translate every vendor error (botocore, OSError) into one of these, so the
gateway handles one family and never imports boto3 to catch an error. Each class
carries a stable ``code`` that callers can map to an HTTP status or an audit tag.
Messages name object keys (opaque ids, never PHI) and never machine paths or
credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .types import DestroyReport


class StorageError(Exception):
    """Base class of every error raised by the storage package."""

    code = "storage.error"


class InvalidObjectKey(StorageError, ValueError):
    """The key is not an acceptable opaque object id (charset, length, traversal)."""

    code = "storage.invalid_key"


class InvalidRange(StorageError, ValueError):
    """A byte range that cannot be served (negative, inverted, or starting past the end)."""

    code = "storage.invalid_range"


class InvalidMetadata(StorageError, ValueError):
    """Object metadata that does not fit the portable subset (names, values, size)."""

    code = "storage.invalid_metadata"


class ConfigurationError(StorageError, ValueError):
    """The store URL or a factory argument is malformed or unsupported."""

    code = "storage.configuration"


class ObjectNotFound(StorageError, KeyError):
    """No object is stored under this key."""

    code = "storage.not_found"

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the argument
        return f"object not found: {self.key}"


class StorageUnavailable(StorageError):
    """The backend cannot be reached or keeps failing (after retries); try again later."""

    code = "storage.unavailable"


class StoragePermissionDenied(StorageError):
    """The backend refused the operation for lack of permission (not Object Lock)."""

    code = "storage.permission_denied"


class IntegrityError(StorageError):
    """Stored or transferred bytes do not match their checksum or expected size."""

    code = "storage.integrity"


class ResidencyError(StorageError):
    """The store is not provably onshore; the backend refuses to start."""

    code = "storage.residency"


class DeletionBlocked(StorageError):
    """Some stored versions could not be destroyed (Object Lock retention or legal hold).

    ``report`` is the full :class:`~storage.DestroyReport`: what was deleted, and each
    blocked version with the reason. Nothing is claimed destroyed that was not.
    """

    code = "storage.deletion_blocked"

    def __init__(self, key: str, report: DestroyReport) -> None:
        blocked = ", ".join(f"{b.version_id} ({b.reason})" for b in report.blocked)
        super().__init__(f"destruction of {key} is blocked: {len(report.blocked)} version(s) remain: {blocked}")
        self.key = key
        self.report = report
