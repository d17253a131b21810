"""`record_event()`: the only way anything writes to the audit log.

It adds the event to the caller's SQLAlchemy session, so the event commits or
rolls back together with the action it describes: an action without its
event, or an event for an action that never happened, cannot exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.models import AuditEvent, Outcome, Severity

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Actor:
    """Who acted and from where; `user_id` is None for anonymous or system actions."""

    user_id: str | None = None
    org_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls) -> "Actor":
        return cls(user_agent="phigate-system")


def record_event(
    db: Session,
    action: str,
    *,
    actor: Actor,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    target_type: str | None = None,
    target_id: str | None = None,
    target_org_id: str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Append one event (namespaced action such as `auth.login.failed`) to the caller's transaction."""
    details = dict(details or {})
    for key, value in details.items():
        # Events carry ids, counts, reasons and hashes; free text that could hold
        # PHI (file names, notes) must never be passed in here.
        if not isinstance(value, _SCALARS) and not (
            isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value)
        ):
            raise TypeError(f"audit detail {key!r} must be a scalar or a list of scalars")
    event = AuditEvent(
        occurred_at=clock.now(),
        action=action,
        outcome=outcome,
        severity=severity,
        actor_user_id=actor.user_id,
        actor_org_id=actor.org_id,
        ip=actor.ip,
        user_agent=(actor.user_agent or "")[:256] or None,
        target_type=target_type,
        target_id=target_id,
        target_org_id=target_org_id,
        details=details,
    )
    db.add(event)
    return event
