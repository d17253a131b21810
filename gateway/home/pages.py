"""The home page per role, and the counts of waiting work that every page's navigation shows.

Composition only (an adapter): each number and list comes from its domain's read
function, scoped to the caller like every other lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from gateway import clock
from gateway.auditor import alerts
from gateway.auditor.search import Scope
from gateway.auth.models import SessionStage
from gateway.auth.service import Principal
from gateway.baas.service import expiring
from gateway.config import Settings
from gateway.deps import AppSettings, CurrentPrincipal, DbSession
from gateway.orgs.service import names
from gateway.transfers import activity
from gateway.transfers.service import approval_queue, unreviewed_emergencies
from gateway.users.models import Role
from gateway.users.service import due_for_review
from gateway.web import render

router = APIRouter(include_in_schema=False)

BAA_NOTICE = timedelta(days=30)  # a BAA ending within this is shown to administrators
SENDERS = (Role.practice_staff, Role.practice_approver)


@dataclass(frozen=True)
class Waiting:
    """How much work waits for one user, by kind (zero for kinds that are not their role's)."""

    approvals: int = 0
    to_fetch: int = 0
    alerts: int = 0
    emergencies: int = 0
    baas_expiring: int = 0
    accounts_due: int = 0


def waiting(db: Session, settings: Settings, principal: Principal) -> Waiting:
    """The counts for the navigation: one or two COUNT queries for the caller's role."""
    role = principal.user.role
    if role == Role.practice_approver:
        return Waiting(approvals=activity.count_awaiting_approval(db, principal))
    if role == Role.biller:
        return Waiting(to_fetch=activity.count_to_fetch(db, principal))
    if role == Role.auditor:
        scope = Scope.of(db, principal)
        return Waiting(
            alerts=len(alerts.visible_alerts(db, scope, limit=100, open_only=True).items),
            emergencies=len(unreviewed_emergencies(db, principal)),
        )
    if role == Role.admin:
        return Waiting(
            baas_expiring=len(expiring(db, BAA_NOTICE)),
            accounts_due=len(due_for_review(db, settings.audit_inactivity_days)),
        )
    return Waiting()


def navigation_counts(components, principal: Principal | None) -> Waiting | None:
    """For `gateway.web.render`: the counts of a fully signed-in user, read in a snapshot of their own."""
    if principal is None or principal.user.must_change_password:
        return None
    if principal.session is not None and principal.session.stage != SessionStage.full:
        return None  # a sign-in still in progress sees no data
    with components.db.snapshot() as db:
        return waiting(db, components.settings, principal)


@router.get("/home")
def home(request: Request, db: DbSession, settings: AppSettings, principal: CurrentPrincipal):
    user = principal.user
    now = clock.now()
    context: dict = {"now": now}
    if user.role == Role.practice_approver:
        queue = approval_queue(db, principal, limit=20).items
        context["queue"] = [(t, activity.age(t, now)) for t in queue]
    if user.role in SENDERS:
        context["sent"] = activity.sent_by_me(db, principal)
    if user.role == Role.biller:
        context["to_fetch"] = activity.to_fetch(db, principal)
    if user.role == Role.auditor:
        scope = Scope.of(db, principal)
        context["alerts"] = alerts.visible_alerts(db, scope, limit=20, open_only=True).items
        context["emergencies"] = unreviewed_emergencies(db, principal)
    if user.role == Role.admin:
        context["baas"] = expiring(db, BAA_NOTICE, now)
        context["accounts"] = due_for_review(db, settings.audit_inactivity_days, now=now)[:50]
        context["inactivity_days"] = settings.audit_inactivity_days
    transfers = [t for t, _ in context.get("queue", [])] + [s.transfer for s in context.get("sent", [])]
    transfers += context.get("to_fetch", []) + context.get("emergencies", [])
    org_ids = {t.practice_id for t in transfers} | {t.vendor_id for t in transfers}
    org_ids |= {b.practice_id for b in context.get("baas", [])} | {b.vendor_id for b in context.get("baas", [])}
    org_ids |= {a.org_id for a in context.get("accounts", [])}
    return render(request, "home.html", principal=principal, orgs=names(db, org_ids), **context)
