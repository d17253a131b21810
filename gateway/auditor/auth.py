"""Who may read the audit log: auditors only, read-only, never file contents."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.auth.service import Principal
from gateway.deps import require
from gateway.users.models import Role

AuditorPrincipal = Annotated[Principal, Depends(require(Role.auditor))]
