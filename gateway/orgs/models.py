from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class OrgKind(str, enum.Enum):
    practice = "practice"
    vendor = "vendor"
    operator = "operator"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[OrgKind] = mapped_column(Enum(OrgKind, name="org_kind", native_enum=False, length=16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Sign-in hours (gateway/orgs/hours.py): an IANA zone and HH-HH; unset, the operator's apply.
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signin_hours: Mapped[str | None] = mapped_column(String(5), nullable=True)
