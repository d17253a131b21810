from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth.service import Proof

# Inputs are bounded: an over-long field is a clear 422, never a slow hash or a huge row.
Code = Field(min_length=1, max_length=32)
Secret = Field(min_length=1, max_length=1024)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Secret


class StepUpIn(BaseModel):
    """A fresh second factor: a TOTP `code`, or `passkey_assertion`, the JSON form of the
    PublicKeyCredential that navigator.credentials.get() returned for a challenge of this session."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = Field(default=None, max_length=32)
    passkey_assertion: dict[str, Any] | None = None

    def proof(self) -> Proof:
        return Proof(code=self.code or "", passkey_assertion=self.passkey_assertion)


class CodeIn(StepUpIn):
    """The second factor at sign-in (a recovery code also works there) or as step-up."""


class PasskeyOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Literal["login", "stepup"]


class PasskeyRegisterIn(StepUpIn):
    """`credential`: the JSON form of navigator.credentials.create()'s answer. From the account page,
    also the current `password` and a fresh factor; right after a sign-in held for registration, neither."""

    name: str = Field(min_length=1, max_length=100)
    credential: dict[str, Any]
    password: str = Field(default="", max_length=1024)


class PasskeyOptionsOut(BaseModel):
    """WebAuthn options in their JSON form (WebAuthn Level 3, `PublicKeyCredentialRequestOptionsJSON` or
    `...CreationOptionsJSON`): give them to navigator.credentials.get() or .create() as they are."""

    model_config = ConfigDict(extra="allow")
    challenge: str = Field(description="base64url; single-use, bound to this session, expires")
    timeout: int | None = Field(default=None, description="milliseconds")


class PasskeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    aaguid: str
    transports: str
    backup_eligible: bool
    backed_up: bool
    created_at: datetime
    last_used_at: datetime | None


class PasskeyPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["role", "org"]
    value: str = Field(min_length=1, max_length=64, description="a role name, or an organisation id")


class PasskeyPolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    scope: str
    value: str
    created_at: datetime
    created_by: str | None


class StageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"stage": "mfa", "csrf_token": "q3T...", "must_change_password": False}]}
    )
    stage: str = Field(description="what comes next: `mfa`, `enrol`, `passkey`, or `full` (signed in)")
    csrf_token: str = Field(description="send it as `X-CSRF-Token` with the session cookie on state-changing requests")
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


class TokenCreateIn(StepUpIn):
    name: str = Field(min_length=1, max_length=100)
    days: int = Field(default=30, ge=1, le=366)


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
    passkeys: int
    passkey_required: bool
    must_change_password: bool
    csrf_token: str | None
