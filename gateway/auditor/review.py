"""Access reviews per vendor, and the job that disables accounts left unused.

HIPAA asks for regular review of who can reach PHI.  The report lists each
vendor user with role, status, MFA, who created the account and when, last
sign-in, last completed download and days inactive.  `disable_inactive()`
disables accounts inactive longer than PHIGATE_AUDIT_INACTIVITY_DAYS through
gateway.users.service.disable_user (which ends sessions and tokens) and records
why, with the numbers, as its own event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import AuditEvent, Outcome, Severity
from gateway.audit.sequencer import catch_up
from gateway.audit.service import Actor, record_event
from gateway.auditor.search import Scope
from gateway.errors import NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page
from gateway.users.models import User

DOWNLOAD_ACTION = Action.TRANSFER_DOWNLOAD_COMPLETED


@dataclass
class ReviewRow:
    user_id: str
    username: str
    full_name: str
    role: str
    active: bool
    mfa_enrolled: bool
    created_at: datetime
    created_by: str | None
    last_login_at: datetime | None
    last_download_at: datetime | None
    days_inactive: int


# By name.
VENDORS = paging.Order("review-vendors", (Organisation.name, Organisation.id))


def vendors_in_scope(db: Session, scope: Scope) -> list[Organisation]:
    """Every vendor the caller may review, by name."""
    return list(paging.every(lambda cursor: vendor_page(db, scope, limit=paging.MAX_LIMIT, cursor=cursor)))


def _reviewable(scope: Scope):
    """The vendors the caller may review, in SQL: all for operator auditors; for a practice, vendors its events
    involve."""
    query = select(Organisation).where(Organisation.kind == OrgKind.vendor)
    if scope.org_id is not None:
        linked = (
            select(AuditEvent.actor_org_id)
            .where(AuditEvent.target_org_id == scope.org_id)
            .union(select(AuditEvent.target_org_id).where(AuditEvent.actor_org_id == scope.org_id))
        )
        query = query.where(Organisation.id.in_(linked))
    return query


def vendor_page(
    db: Session, scope: Scope, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Organisation]:
    """One page of the vendors the caller may review, by name."""
    return VENDORS.page(db, _reviewable(scope), limit=limit, cursor=cursor)


def _last_downloads(db: Session, user_ids: list[str]) -> dict[str, datetime]:
    if not user_ids:
        return {}
    rows = db.execute(
        select(AuditEvent.actor_user_id, func.max(AuditEvent.occurred_at))
        .where(
            AuditEvent.action == DOWNLOAD_ACTION,
            AuditEvent.outcome == Outcome.success,
            AuditEvent.actor_user_id.in_(user_ids),
        )
        .group_by(AuditEvent.actor_user_id)
    )
    from gateway.db import UTCDateTime

    conv = UTCDateTime().process_result_value
    out: dict[str, datetime] = {}
    for uid, when in rows:
        # max() loses the column type on SQLite: normalise to an aware UTC datetime.
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        at = conv(when, None)
        if uid is not None and at is not None:  # both always set: users matched by `in_`, max() of their rows
            out[uid] = at
    return out


def _rows(db: Session, users: list[User], now: datetime) -> list[ReviewRow]:
    downloads = _last_downloads(db, [u.id for u in users])
    creators = {
        u.id: u.username
        for u in db.scalars(select(User).where(User.id.in_([u.created_by for u in users if u.created_by])))
    }
    out = []
    for u in users:
        last = max(t for t in (u.created_at, u.last_login_at, downloads.get(u.id)) if t is not None)
        out.append(
            ReviewRow(
                u.id,
                u.username,
                u.full_name,
                u.role.value,
                u.active,
                u.mfa_enrolled,
                u.created_at,
                creators.get(u.created_by, u.created_by) if u.created_by else None,
                u.last_login_at,
                downloads.get(u.id),
                max(0, (now - last).days),
            )
        )
    return out


def access_review(
    db: Session, scope: Scope, vendor_id: str, now: datetime | None = None
) -> tuple[Organisation, list[ReviewRow]]:
    """The access review of one vendor, if the caller may see it (404 otherwise, same as unknown)."""
    vendor = db.scalar(_reviewable(scope).where(Organisation.id == vendor_id))
    if vendor is None:
        raise NotFound("No such vendor.", code="vendor_not_found")
    users = list(db.scalars(select(User).where(User.org_id == vendor.id).order_by(User.username)))
    return vendor, _rows(db, users, now or clock.now())


def disable_inactive(components, actor: Actor, days: int | None = None, now: datetime | None = None) -> list[str]:
    """Disable practice and vendor accounts unused for more than `days` days; returns their usernames.

    Operator accounts are left alone so the job can never lock out the administrators.
    """
    from gateway.users.service import disable_user

    days = days or components.settings.audit_inactivity_days
    now = now or clock.now()
    # A sign-in committed a moment ago is activity: it must be in the log before the log is read.
    catch_up(components.db)
    with components.db.sessions() as db:
        candidates = list(
            db.scalars(
                select(User)
                .join(Organisation, User.org_id == Organisation.id)
                .where(
                    User.active.is_(True),
                    or_(Organisation.kind == OrgKind.vendor, Organisation.kind == OrgKind.practice),
                )
            )
        )
        stale = [r for r in _rows(db, candidates, now) if r.days_inactive > days]
    disabled = []
    for row in stale:
        with components.db.transaction() as db:
            user = db.get(User, row.user_id)
            if user is None or not user.active:
                continue
            disable_user(db, user, actor, reason=f"inactive_over_{days}_days")
            record_event(
                db,
                Action.AUDIT_ACCESS_REVIEW_ACCOUNT_DISABLED,
                actor=actor,
                severity=Severity.warning,
                target_type="user",
                target_id=user.id,
                target_org_id=user.org_id,
                details={
                    "days_inactive": row.days_inactive,
                    "threshold_days": days,
                    "last_login": row.last_login_at.date().isoformat() if row.last_login_at else None,
                    "last_download": row.last_download_at.date().isoformat() if row.last_download_at else None,
                },
            )
            disabled.append(user.username)
    return disabled
