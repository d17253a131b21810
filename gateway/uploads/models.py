"""A resumable upload and the parts of its ciphertext kept so far.

The upload records everything the transfer it becomes needs (partner, purpose, sealed
note and file name, recipients), checked against every gate when it was created, and
the durable offset: the plaintext bytes whose ciphertext is stored.  The ciphertext goes
straight into the object being assembled (`assembly`: the S3 multipart UploadId, or the
local store's file), part by part (`AssemblyPart`, with S3's ETags); on a store whose
parts have a minimum size (S3: 5 MiB) a shorter tail of a request is kept as a staged
object (`UploadPart`) until the next request makes it a part.  The object and every
staged tail are rows of the sealed-object registry (kinds `upload` and `upload_part`),
so fsck, rewrap and key destruction see an unfinished upload.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.transfers.models import Direction


class UploadState(str, enum.Enum):
    open = "open"  # bytes still arriving
    complete = "complete"  # every byte stored and assembled; waiting to become a transfer
    used = "used"  # part of a transfer now (transfer_id)
    cancelled = "cancelled"  # ended by its sender; everything stored destroyed
    expired = "expired"  # not finished or used in time; everything stored destroyed
    offboarded = "offboarded"  # its vendor was offboarded first; everything stored destroyed


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    direction: Mapped[Direction] = mapped_column(Enum(Direction, native_enum=False, length=16))
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    partner_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(100))
    # Sealed under the upload's key with the upload's own context; resealed for the transfer.
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recipients: Mapped[list] = mapped_column(JSON)
    # The transfer file this upload becomes; the name is sealed for it from the start.
    file_id: Mapped[str] = mapped_column(String(32), unique=True)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    extension: Mapped[str] = mapped_column(String(16))
    file_type: Mapped[str] = mapped_column(String(16), default="")
    key_id: Mapped[str] = mapped_column(String(100))
    sealed_id: Mapped[str] = mapped_column(String(32), index=True)
    # The object's 81-byte stream header (salt, nonce prefix, key commitment: no secret).
    stream_header: Mapped[bytes] = mapped_column(LargeBinary)
    length: Mapped[int] = mapped_column(BigInteger)
    # Plaintext bytes durably stored (kept parts); moves only forward, by conditional update.
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[UploadState] = mapped_column(Enum(UploadState, native_enum=False, length=16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The store's token for the object being assembled (S3: the multipart UploadId).
    assembly: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # The request writing now (a lease: one writer at a time, renewed as it keeps parts).
    writer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    writer_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AssemblyPart(Base):
    """A part written into the object itself: ciphertext [offset, offset + size) = segments from `first_segment`."""

    __tablename__ = "upload_assembly_parts"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(80), nullable=True)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    first_segment: Mapped[int] = mapped_column(Integer)
    segments: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)


class UploadPart(Base):
    """A staged tail, stored apart: segments [first_segment, first_segment + segments) = plaintext [start, end)."""

    __tablename__ = "upload_parts"

    sealed_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    object_key: Mapped[str] = mapped_column(String(64))
    first_segment: Mapped[int] = mapped_column(Integer)
    segments: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
