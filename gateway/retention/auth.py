"""Who may call the retention routes and pages: administrators change, auditors read certificates."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.auth.service import Principal
from gateway.deps import require
from gateway.users.models import Role

AuditorOrAdmin = Annotated[Principal, Depends(require(Role.auditor, Role.admin))]
