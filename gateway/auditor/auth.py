"""Who may read the audit log: auditors only, read-only, never file contents."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.audit.sequencer import catch_up
from gateway.auth.service import Principal
from gateway.deps import AppComponents, require
from gateway.users.models import Role


def _auditor(principal: Annotated[Principal, Depends(require(Role.auditor))], components: AppComponents) -> Principal:
    """An auditor, who reads a log holding every event committed before the request.

    On PostgreSQL events wait in the queue until the leader integrates them (gateway/audit/sequencer.py);
    an auditor's page, search or export integrates what is queued first, so nobody looks at a log that
    misses what just happened (a read when the queue is empty; otherwise a short wait for the append lock,
    which only integrations and bulk appends hold). A plain def: FastAPI runs it on a worker thread.
    """
    catch_up(components.db)
    return principal


AuditorPrincipal = Annotated[Principal, Depends(_auditor)]
