"""What can go wrong with a sealed object, said plainly and the same way everywhere.

Storage and crypto each raise their own exception family; the registry turns
every one of them into one of four gateway errors, each with a stable code, an
HTTP status, the `reason` recorded on the audit event and that event's severity:

* the object is missing, or storage is unreachable or refuses the operation:
  503 `storage_unavailable` (a warning: an operational fault);
* the stored bytes fail their authentication tag, key commitment or checksum,
  whatever the tampering (a flipped bit, truncation, a swapped or replaced
  object): 502 `integrity_failure`, high severity and an alert, always;
* the key service is unreachable, times out or refuses: 503
  `key_provider_unavailable` (a warning);
* the object was destroyed, or its key was (crypto-shredding): 410
  `object_destroyed`; nothing can open it again.
"""

from __future__ import annotations

from typing import overload

from crypto import CryptoError, DecryptionError, KeyNotFound, ProviderUnavailable
from gateway.audit.models import Severity
from gateway.errors import GatewayError
from storage import IntegrityError, ObjectNotFound, StorageError, StoragePermissionDenied


class SealedError(GatewayError):
    """A failure of a sealed object; `reason` goes on the audit event, `severity` sets its level."""

    reason = "sealed_object_failure"
    severity = Severity.warning
    alert = False

    def __init__(self, message: str | None = None, *, reason: str | None = None):
        super().__init__(message)
        if reason:
            self.reason = reason

    def details(self) -> dict:
        """What an audit event about this failure records (no PHI: a reason and whether an alert is due)."""
        return {"reason": self.reason, "error": self.code, "alert": self.alert}


class StorageUnavailable(SealedError):
    status = 503
    code = "storage_unavailable"
    reason = "storage_unavailable"
    message = "File storage is unavailable right now; try again later."


class IntegrityFailure(SealedError):
    status = 502
    code = "integrity_failure"
    reason = "integrity_check_failed"
    severity = Severity.high
    alert = True
    message = "The stored file failed its integrity check and was not sent. The security team has been alerted."


class KeyProviderUnavailable(SealedError):
    status = 503
    code = "key_provider_unavailable"
    reason = "key_provider_unavailable"
    message = "The key service is unavailable right now; try again later."


class ObjectDestroyed(SealedError):
    status = 410
    code = "object_destroyed"
    reason = "object_destroyed"
    message = "This file has been destroyed; nothing can open it again."


@overload
def translate(exc: SealedError | CryptoError | StorageError | OSError) -> SealedError: ...
@overload
def translate(exc: BaseException) -> SealedError | None: ...


def translate(exc: BaseException) -> SealedError | None:
    """The gateway error for a storage, crypto or OS error raised while handling an object; None for others.

    Callers pass only exceptions raised by storage or key-service calls: an OSError
    there is the store failing (a permission error from a read-only directory, a full
    disk), never the client's.
    """
    if isinstance(exc, SealedError):
        return exc
    if isinstance(exc, IntegrityError):
        # Stored bytes that do not match their checksum are tampering until proven otherwise.
        return IntegrityFailure()
    if isinstance(exc, ObjectNotFound):
        return StorageUnavailable(reason="object_missing")
    if isinstance(exc, StoragePermissionDenied | PermissionError):
        return StorageUnavailable(reason="storage_refused")
    if isinstance(exc, StorageError | OSError):
        return StorageUnavailable()
    if isinstance(exc, DecryptionError):
        return IntegrityFailure()
    if isinstance(exc, KeyNotFound):  # KeyDestroyed too: a key that is gone shreds what it sealed
        return ObjectDestroyed(reason="key_destroyed")
    if isinstance(exc, ProviderUnavailable):
        return KeyProviderUnavailable()
    if isinstance(exc, CryptoError):
        # Anything else the key service answers (a disabled key, an unexpected reply) is its refusal.
        return KeyProviderUnavailable(reason="key_provider_refused")
    return None
