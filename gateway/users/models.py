from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id
from gateway.orgs.models import Organisation, OrgKind


class Role(str, enum.Enum):
    practice_staff = "practice_staff"
    practice_approver = "practice_approver"
    biller = "biller"
    auditor = "auditor"
    admin = "admin"


# Least privilege starts with the organisation: a biller can only exist inside a
# vendor, practice roles only inside a practice, administrators only onshore.
ROLE_ORG_KINDS: dict[Role, frozenset[OrgKind]] = {
    Role.practice_staff: frozenset({OrgKind.practice}),
    Role.practice_approver: frozenset({OrgKind.practice}),
    Role.biller: frozenset({OrgKind.vendor}),
    Role.auditor: frozenset({OrgKind.practice, OrgKind.operator}),
    Role.admin: frozenset({OrgKind.operator}),
}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(Enum(Role, name="user_role", native_enum=False, length=32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # TOTP secret sealed under an onshore key (crypto.seal); never stored in clear.
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Replay guard: the last accepted RFC 6238 time step; codes at or below it are refused.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)

    org: Mapped[Organisation] = relationship(lazy="joined")

    @property
    def mfa_enrolled(self) -> bool:
        return self.totp_enrolled_at is not None


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
