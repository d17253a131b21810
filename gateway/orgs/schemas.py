from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.orgs.models import OrgKind

TIMEZONE = (
    "IANA time zone of the organisation's sign-in hours, e.g. `America/New_York`; null: the operator's "
    "(`PHIGATE_TIMEZONE`). An unknown name answers 422 `invalid_timezone`."
)
SIGNIN_HOURS = (
    "Local hours `HH-HH` in which its users' sign-ins raise no alert (`22-06` spans midnight); null: the "
    "operator's (`PHIGATE_AUDIT_ALERT_ALLOWED_HOURS`). Another form answers 422 `invalid_hours`."
)


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=200)
    kind: OrgKind
    timezone: str | None = Field(default=None, max_length=64, description=TIMEZONE)
    signin_hours: str | None = Field(default=None, max_length=5, description=SIGNIN_HOURS, examples=["08-18"])


class OrgHoursIn(BaseModel):
    """Both fields are set together: an omitted or null one goes back to the operator's default."""

    model_config = ConfigDict(extra="forbid")
    timezone: str | None = Field(default=None, max_length=64, description=TIMEZONE)
    signin_hours: str | None = Field(default=None, max_length=5, description=SIGNIN_HOURS, examples=["08-18"])


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    kind: OrgKind
    active: bool
    created_at: datetime
    timezone: str | None = Field(description=TIMEZONE)
    signin_hours: str | None = Field(description=SIGNIN_HOURS)
