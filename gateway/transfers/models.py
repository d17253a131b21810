from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class Direction(str, enum.Enum):
    # A practice sends to a vendor: encrypted under the relationship's key, approval required.
    outbound = "outbound"
    # A vendor sends back to a practice: encrypted under the practice's own key.
    inbound = "inbound"


class TransferStatus(str, enum.Enum):
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    rejected = "rejected"
    revoked = "revoked"
    delivered = "delivered"  # inbound transfers: available to the practice at once
    destroyed = "destroyed"


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    direction: Mapped[Direction] = mapped_column(Enum(Direction, native_enum=False, length=16))
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    status: Mapped[TransferStatus] = mapped_column(Enum(TransferStatus, native_enum=False, length=24), index=True)
    # A ticket or claim reference chosen by the sender; documented as "no PHI here".
    purpose: Mapped[str] = mapped_column(String(100))
    # A free-text note may contain PHI: sealed under the same key as the files.
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_id: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    access_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    download_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    emergency_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    emergency_reviewed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    emergency_reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    files: Mapped[list[TransferFile]] = relationship(
        back_populates="transfer", order_by="TransferFile.position", lazy="selectin"
    )
    recipients: Mapped[list[TransferRecipient]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    @property
    def recipient_ids(self) -> set[str]:
        return {r.user_id for r in self.recipients}


class TransferRecipient(Base):
    """Named billers; an outbound transfer with none named is for every biller of the vendor."""

    __tablename__ = "transfer_recipients"

    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)


class FileState(str, enum.Enum):
    stored = "stored"
    destroying = "destroying"
    destroyed = "destroyed"


class TransferFile(Base):
    """One file of a transfer. The name is sealed; the encrypted object is in the sealed-object
    registry (kind `transfer_file`, owner = this file's id), which holds its key and location."""

    __tablename__ = "transfer_files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    file_type: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[FileState] = mapped_column(Enum(FileState, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    transfer: Mapped[Transfer] = relationship(back_populates="files")


class DownloadOutcome(str, enum.Enum):
    started = "started"  # a request is sending it now
    aborted = "aborted"  # paused part way (the client went, or asked for a range): its user may resume it
    completed = "completed"  # every byte delivered: counts towards the limit for good
    failed = "failed"  # the gateway failed before delivering anything: its place is given back


class Download(Base):
    """One download of a file by one user: a place under the approval's download limit.

    It holds its place from the moment it starts.  Later ranged requests of the same
    user resume it from `delivered_to` (the end of the bytes already delivered), and
    never once it is completed.  Denials live in the audit log only.
    """

    __tablename__ = "downloads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("transfer_files.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When its latest request started (a `started` download with no request for long was cut by a crash).
    active_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    range_start: Mapped[int] = mapped_column(BigInteger)
    range_end: Mapped[int] = mapped_column(BigInteger)
    delivered_to: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    outcome: Mapped[str] = mapped_column(String(16))  # a DownloadOutcome
    resumptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Wave 1 recorded each resumed request as a row of its own; such rows are history only.
    resumed: Mapped[bool] = mapped_column(Boolean, default=False)
