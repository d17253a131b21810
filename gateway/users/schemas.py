from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.users.models import Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=3, max_length=64)
    full_name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    org_id: str
    username: str
    full_name: str
    email: str
    role: Role
    active: bool
    mfa_enrolled: bool
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreated(UserOut):
    one_time_password: str = Field(description="Shown once; the user must change it at first sign-in.")
