from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
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

    files: Mapped[list[TransferFile]] = relationship(back_populates="transfer", order_by="TransferFile.position",
                                                     lazy="selectin")
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
    """One encrypted file. The name is sealed; the DEK is wrapped; the object key is opaque."""

    __tablename__ = "transfer_files"
    __table_args__ = (UniqueConstraint("object_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    object_key: Mapped[str] = mapped_column(String(64))
    storage_location: Mapped[str] = mapped_column(String(200))
    name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    file_type: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[FileState] = mapped_column(Enum(FileState, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    transfer: Mapped[Transfer] = relationship(back_populates="files")


class Download(Base):
    """One download attempt that passed the gates (denials live in the audit log only)."""

    __tablename__ = "downloads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("transfer_files.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    range_start: Mapped[int] = mapped_column(BigInteger)
    range_end: Mapped[int] = mapped_column(BigInteger)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    outcome: Mapped[str] = mapped_column(String(16))  # started, completed, aborted, failed
    resumed: Mapped[bool] = mapped_column(Boolean, default=False)


class PendingObject(Base):
    """An object being written: recorded (and committed) before the first byte goes to storage,
    so that a crash mid-upload leaves a row `phigate fsck` finds and destroys, never an orphan."""

    __tablename__ = "pending_objects"

    object_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    storage_location: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(32))
