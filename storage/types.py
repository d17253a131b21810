"""The ObjectStore protocol and the values it returns.

Every value is a frozen dataclass so it can be logged, compared and written on a
destruction certificate (``as_dict()`` gives a JSON-ready mapping).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

#: Version id used for an object that has no version (local backend, unversioned bucket).
NULL_VERSION = "null"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field (datetimes as ISO 8601)."""
        out: dict[str, Any] = _jsonable(self)
        return out


@dataclasses.dataclass(frozen=True)
class StoredObject(_AsDict):
    """What ``put`` stored.

    ``checksum`` is ``"crc32c:<hex>"`` of the whole object as streamed by the caller,
    computed by this library; the backend confirmed the same bytes (see docs).  An
    object assembled from parts on S3 has ``"crc32c-composite:<hex>-<parts>"`` (``sha256``
    in place of ``crc32c`` for an assembly begun before CRC32C; storage/checksums.py).
    """

    key: str
    size: int
    version_id: str | None
    checksum: str
    parts: int = 1


@dataclasses.dataclass(frozen=True)
class AssemblyPart(_AsDict):
    """One part of an object assembled in place (``put_assembly_part``), to name at ``complete_assembly``.

    ``offset`` is where the part's bytes start in the object; ``checksum`` is
    ``"crc32c:<hex>"`` of the part (``"sha256:<hex>"`` in an assembly begun before CRC32C;
    S3 checks it on arrival and in the composite) or
    ``None`` where the backend keeps no per-part digest (local); ``etag`` is S3's.
    """

    number: int
    offset: int
    size: int
    checksum: str | None = None
    etag: str | None = None


@dataclasses.dataclass(frozen=True)
class ObjectInfo(_AsDict):
    """What the backend knows about one stored object.

    ``metadata`` is ``None`` when it was not fetched (``list`` never fetches it).
    ``checksum`` is ``"crc32c:<hex>"`` for a whole-object checksum, or
    ``"crc32c-composite:<hex>-<parts>"`` for an S3 multipart object (``sha256`` in place
    of ``crc32c`` for an object written before CRC32C); ``None`` if the backend holds none.
    """

    key: str
    size: int
    metadata: Mapping[str, str] | None = None
    version_id: str | None = None
    last_modified: datetime | None = None
    checksum: str | None = None
    etag: str | None = None
    encryption: str | None = None


@dataclasses.dataclass(frozen=True)
class AbsenceProof(_AsDict):
    """The checks ``verify_absent`` ran and what each found.

    ``absent`` is true only if every check found nothing. ``checks`` are
    human-readable lines suitable for a destruction certificate, e.g.
    ``"s3:HeadObject -> 404"``. ``checked_at`` is UTC.
    """

    key: str
    absent: bool
    checks: tuple[str, ...]
    location_id: str
    checked_at: datetime


@dataclasses.dataclass(frozen=True)
class BlockedVersion(_AsDict):
    """A version that could not be deleted, and why (e.g. ``"legal hold ON"``)."""

    version_id: str
    reason: str
    is_delete_marker: bool = False
    retain_until: datetime | None = None


@dataclasses.dataclass(frozen=True)
class DestroyReport(_AsDict):
    """The outcome of ``destroy(key)``, designed to be copied onto a destruction certificate.

    ``versions_deleted`` and ``delete_markers_deleted`` are the version ids removed
    (``"null"`` for an unversioned object). ``blocked`` lists what remains and why.
    ``verified`` is true only if nothing is blocked and ``proof.absent`` is true.
    """

    key: str
    location_id: str
    versions_deleted: tuple[str, ...]
    delete_markers_deleted: tuple[str, ...]
    blocked: tuple[BlockedVersion, ...]
    uploads_aborted: int
    temp_files_removed: int
    verified: bool
    proof: AbsenceProof | None
    started_at: datetime
    finished_at: datetime

    @property
    def complete(self) -> bool:
        """True if every stored version is gone and absence was verified."""
        return self.verified and not self.blocked


@runtime_checkable
class ObjectStore(Protocol):
    """One small interface over every backend. Keys are validated by every method."""

    @property
    def location_id(self) -> str:
        """A stable id of where data lives (no machine paths, no credentials)."""
        ...

    def put(
        self,
        key: str,
        chunks: Iterable[bytes],
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Stream ``chunks`` (unknown total length) into ``key``; replaces any object there."""
        ...

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)``; raises ObjectNotFound before returning if absent."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Size, metadata and checksum of the current object."""
        ...

    def destroy(self, key: str) -> DestroyReport:
        """Remove every stored version of ``key``; raises DeletionBlocked if any remains."""
        ...

    def verify_absent(self, key: str) -> AbsenceProof:
        """Prove that nothing of ``key`` remains in the store."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every current object whose key starts with ``prefix`` (order unspecified)."""
        ...

    def check(self) -> None:
        """Readiness: raise StorageUnavailable (or ResidencyError) if the store cannot serve."""
        ...

    def sweep_temp(self, older_than: float) -> int:
        """Remove leftovers of interrupted puts older than ``older_than`` seconds."""
        ...


@runtime_checkable
class AssemblingStore(Protocol):
    """Objects written in parts over many calls, by any process, then made whole without copying.

    ``begin_assembly`` returns a token (S3: the multipart UploadId; local: the name of
    the file being written) for the caller to record; ``put_assembly_part`` stores part
    ``number`` at ``offset`` (consuming the chunks as they come; a failure of the caller's
    iterator is raised unchanged) and returns only once it is durable; ``complete_assembly``
    makes the parts the object (S3 CompleteMultipartUpload; local: the trailer written
    and the file renamed), idempotently; ``abort_assembly`` (and ``destroy(key)``)
    removes everything of an unfinished one.  Every part but the last must be at least
    ``min_part_size`` bytes.  The caller sees to it that one writer at a time writes an
    assembly (the gateway holds a lease on the upload).
    """

    @property
    def min_part_size(self) -> int: ...

    def begin_assembly(self, key: str, metadata: Mapping[str, str] | None = None) -> str: ...

    def put_assembly_part(
        self, key: str, token: str, number: int, offset: int, chunks: Iterable[bytes]
    ) -> AssemblyPart: ...

    def complete_assembly(
        self, key: str, token: str, parts: list[AssemblyPart], metadata: Mapping[str, str] | None = None
    ) -> StoredObject: ...

    def abort_assembly(self, key: str, token: str) -> None: ...
