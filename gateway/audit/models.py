from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Enum, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class Outcome(str, enum.Enum):
    success = "success"
    failure = "failure"
    denied = "denied"


class Severity(str, enum.Enum):
    info = "info"
    warning = "warning"
    high = "high"


class AuditEvent(Base):
    """One security-relevant action. No PHI: files by id, size and hash only."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[Outcome] = mapped_column(Enum(Outcome, native_enum=False, length=8))
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=8))
    actor_user_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    actor_org_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    target_org_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
