from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class BaaStatus(str, enum.Enum):
    active = "active"
    terminated = "terminated"


class Baa(Base):
    __tablename__ = "baas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    reference: Mapped[str] = mapped_column(String(100))
    status: Mapped[BaaStatus] = mapped_column(Enum(BaaStatus, native_enum=False, length=16))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    terminated_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The signed copy (a PDF) is a sealed object (kind `baa_copy`, owner = this BAA) under the
    # practice's own key; these describe the current one.
    copy_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    copy_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    copy_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def in_force(self, at: datetime) -> bool:
        """Signed, started, not expired, not terminated: the only state in which PHI may move."""
        return (
            self.status == BaaStatus.active
            and self.effective_at <= at
            and (self.expires_at is None or at < self.expires_at)
        )
