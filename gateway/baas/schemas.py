from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.baas.models import BaaStatus


class BaaCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    practice_id: str = Field(min_length=1, max_length=64)
    vendor_id: str = Field(min_length=1, max_length=64)
    reference: str = Field(min_length=1, max_length=100)
    effective_at: datetime
    expires_at: datetime | None = None


class BaaTerminate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200)


class BaaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    practice_id: str
    vendor_id: str
    reference: str
    status: BaaStatus
    effective_at: datetime
    expires_at: datetime | None
    terminated_at: datetime | None
    copy_size: int | None = None
    copy_sha256: str | None = None
    copy_uploaded_at: datetime | None = None
