from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.schemas import StepUpIn
from gateway.transfers.models import Direction, TransferStatus


class ApproveIn(StepUpIn):
    days: int = Field(default=7, ge=1, le=366)
    download_limit: int | None = Field(default=None, ge=1, le=10000)
    recipient_ids: list[str] = Field(default_factory=list, max_length=100)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class EmergencyIn(StepUpIn):
    hours: int = Field(default=4, ge=1, le=72)
    reason: str = Field(min_length=1, max_length=500)


class FileOut(BaseModel):
    id: str
    name: str | None = Field(description="Decrypted for callers entitled to the transfer; null once destroyed")
    file_type: str
    size: int
    sha256: str
    state: str


class TransferOut(BaseModel):
    id: str
    direction: Direction
    status: TransferStatus
    practice_id: str
    vendor_id: str
    purpose: str
    created_by: str
    created_at: datetime
    decided_at: datetime | None
    access_ends_at: datetime | None
    download_limit: int | None
    recipient_ids: list[str]
    emergency: bool
    files: list[FileOut]


class DownloadOut(BaseModel):
    file_id: str
    user_id: str
    user: str = Field(description="The downloader's full name")
    at: datetime = Field(description="When its latest request started")
    bytes: int = Field(description="Bytes delivered, over every request of this download")
    complete: bool = Field(description="Every byte delivered; false: a range, or interrupted (it may be resumed)")


class TransferDetail(TransferOut):
    downloads: list[DownloadOut] | None = Field(
        description="Who downloaded which file, oldest first: for the sending organisation's staff, approvers and "
        "billers; null for anyone else (auditors read the transfer log)"
    )


class TransferCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "5d2f9c0e8b7a4e6f9a1b2c3d4e5f6a7b", "status": "awaiting_approval"}]}
    )
    id: str
    status: TransferStatus


class RecipientOut(BaseModel):
    id: str
    full_name: str


class PartnerOut(BaseModel):
    id: str
    name: str
    kind: str = Field(description="`vendor` for practice staff and approvers, `practice` for billers")
    billers: list[RecipientOut] = Field(
        description="Whom an upload to this partner may name in `biller_ids`: the vendor's active billers "
        "(always empty for a practice: files sent back name no one)"
    )
