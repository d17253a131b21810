from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# Inputs are bounded: an over-long field is a clear 422, never a slow hash or a huge row.
Code = Field(min_length=1, max_length=32)
Secret = Field(min_length=1, max_length=1024)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Secret


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Code


class StageOut(BaseModel):
    stage: str
    csrf_token: str
    must_change_password: bool = False


class EnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg_data_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Secret
    new_password: str = Secret


class TokenCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    days: int = Field(default=30, ge=1, le=366)
    code: str = Code


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="Shown once; store it now.")


class MeOut(BaseModel):
    id: str
    username: str
    full_name: str
    role: str
    org_id: str
    org_name: str
    org_kind: str
    mfa_enrolled: bool
    must_change_password: bool
    csrf_token: str | None
