"""Object storage for PHI Gate: one small ``ObjectStore`` protocol, backends by URL.

Stores only ciphertext (encrypted by ``crypto/``), under opaque keys chosen by the
caller. See docs/storage.md for the guarantees (atomic puts, multipart with
checksums, residency, audited destruction).
"""

from .errors import (
    ConfigurationError,
    DeletionBlocked,
    IntegrityError,
    InvalidMetadata,
    InvalidObjectKey,
    InvalidRange,
    ObjectNotFound,
    ResidencyError,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
)
from .factory import open_object_store
from .keys import MAX_KEY_LENGTH, validate_key
from .local import LocalObjectStore
from .s3 import DEFAULT_ONSHORE_REGIONS, S3ObjectStore
from .types import (
    AbsenceProof,
    AssemblingStore,
    AssemblyPart,
    BlockedVersion,
    DestroyReport,
    ObjectInfo,
    ObjectStore,
    StoredObject,
)

__all__ = [
    "DEFAULT_ONSHORE_REGIONS",
    "MAX_KEY_LENGTH",
    "AbsenceProof",
    "AssemblingStore",
    "AssemblyPart",
    "BlockedVersion",
    "ConfigurationError",
    "DeletionBlocked",
    "DestroyReport",
    "IntegrityError",
    "InvalidMetadata",
    "InvalidObjectKey",
    "InvalidRange",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ResidencyError",
    "S3ObjectStore",
    "StorageError",
    "StoragePermissionDenied",
    "StorageUnavailable",
    "StoredObject",
    "open_object_store",
    "validate_key",
]
