"""Who may call the transfers routes and pages: one alias per permission, declared on each handler.

Roles only open the door; every lookup is still scoped to the caller's organisation
(service.find_transfer) and the approval rules (four eyes, BAA in force) live in the service.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.auth.service import Principal
from gateway.deps import Caller, require, require_in_handler
from gateway.users.models import Role

Sender = Annotated[Principal, Depends(require(Role.practice_staff, Role.practice_approver, Role.biller))]
Approver = Annotated[Principal, Depends(require(Role.practice_approver))]
Reader = Annotated[
    Principal, Depends(require(Role.practice_staff, Role.practice_approver, Role.biller, Role.auditor, Role.admin))
]
Downloader = Annotated[Principal, Depends(require(Role.practice_staff, Role.practice_approver, Role.biller))]
Biller = Annotated[Principal, Depends(require(Role.biller))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
Auditor = Annotated[Principal, Depends(require(Role.auditor))]

# The lists (list, inbox, approval queue): the same audiences, checked in the handler's own thread (deps.Caller).
ListReader = Annotated[
    Caller,
    Depends(require_in_handler(Role.practice_staff, Role.practice_approver, Role.biller, Role.auditor, Role.admin)),
]
ListApprover = Annotated[Caller, Depends(require_in_handler(Role.practice_approver))]
ListBiller = Annotated[Caller, Depends(require_in_handler(Role.biller))]
