"""What a user is told of (kinds, grouped into topics they choose a cadence for), and the record of each notice."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class Topic(str, enum.Enum):
    """What a user chooses a cadence for, on the account page."""

    approvals = "approvals"  # transfers waiting for your approval
    received = "received"  # transfers you may download, and the end of their access
    sent = "sent"  # what happened to the transfers you sent
    alerts = "alerts"  # audit alerts


class Kind(str, enum.Enum):
    """One kind of notice; each belongs to one topic."""

    approval_requested = "approval_requested"
    transfer_available = "transfer_available"
    access_expiring = "access_expiring"
    transfer_approved = "transfer_approved"
    transfer_rejected = "transfer_rejected"
    transfer_revoked = "transfer_revoked"
    transfer_downloaded = "transfer_downloaded"
    alert_raised = "alert_raised"

    @property
    def topic(self) -> Topic:
        return _TOPICS[self]


_TOPICS = {
    Kind.approval_requested: Topic.approvals,
    Kind.transfer_available: Topic.received,
    Kind.access_expiring: Topic.received,
    Kind.transfer_approved: Topic.sent,
    Kind.transfer_rejected: Topic.sent,
    Kind.transfer_revoked: Topic.sent,
    Kind.transfer_downloaded: Topic.sent,
    Kind.alert_raised: Topic.alerts,
}


class Cadence(str, enum.Enum):
    immediately = "immediately"
    daily = "daily"  # in the daily digest
    off = "off"


class NotificationPreference(Base):
    """A user's cadence for one topic; no row means `immediately`."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[Topic] = mapped_column(Enum(Topic, native_enum=False, length=16), primary_key=True)
    cadence: Mapped[Cadence] = mapped_column(Enum(Cadence, native_enum=False, length=16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """One notice to one user: what, about which organisation, how many; and the message that carried it."""

    __tablename__ = "notifications"
    # A notice that must not repeat (a reminder, the first download by a vendor) carries a key.
    __table_args__ = (UniqueConstraint("user_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[Kind] = mapped_column(Enum(Kind, native_enum=False, length=32))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))  # the organisation the message names
    count: Mapped[int] = mapped_column(Integer, default=1)
    cadence: Mapped[Cadence] = mapped_column(Enum(Cadence, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The outbox message that carries it: set at once (immediately) or by the digest (daily).
    outbox_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    email_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
