"""Organisation administration (administrators only; enforced on the routes)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_event
from gateway.errors import Conflict, NotFound
from gateway.orgs import hours
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page

# By name: unique, and what an administrator looks for.
ORDER = paging.Order("orgs", (Organisation.name, Organisation.id))


def create_org(
    db: Session,
    name: str,
    kind: OrgKind,
    actor: Actor,
    *,
    timezone: str | None = None,
    signin_hours: str | None = None,
) -> Organisation:
    name = " ".join(name.split())
    timezone, signin_hours = _checked(timezone, signin_hours)
    if db.scalar(select(Organisation.id).where(Organisation.name == name)):
        raise Conflict("An organisation with this name exists.", code="org_exists")
    org = Organisation(
        name=name,
        kind=kind,
        active=True,
        created_at=clock.now(),
        created_by=actor.user_id,
        timezone=timezone,
        signin_hours=signin_hours,
    )
    db.add(org)
    db.flush()
    record_event(
        db,
        Action.ADMIN_ORG_CREATED,
        actor=actor,
        target_type="org",
        target_id=org.id,
        target_org_id=org.id,
        details={"kind": kind.value} | {k: v for k, v in (("timezone", timezone), ("signin_hours", signin_hours)) if v},
    )
    return org


def _checked(timezone: str | None, signin_hours: str | None) -> tuple[str | None, str | None]:
    """Blank means the operator's default; anything else must be a known zone and HH-HH (InvalidInput otherwise)."""
    timezone = (timezone or "").strip() or None
    signin_hours = (signin_hours or "").strip() or None
    if timezone is not None:
        hours.zone(timezone)
    if signin_hours is not None:
        hours.parse(signin_hours)
    return timezone, signin_hours


def set_hours(
    db: Session, org_id: str, actor: Actor, *, timezone: str | None, signin_hours: str | None
) -> Organisation:
    """Set (or, blank, clear back to the operator's) an organisation's time zone and sign-in hours."""
    org = get_org(db, org_id)
    org.timezone, org.signin_hours = _checked(timezone, signin_hours)
    record_event(
        db,
        Action.ADMIN_ORG_UPDATED,
        actor=actor,
        target_type="org",
        target_id=org.id,
        target_org_id=org.id,
        details={"timezone": org.timezone, "signin_hours": org.signin_hours},
    )
    return org


def list_orgs(db: Session, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None) -> Page[Organisation]:
    """One page of organisations, by name."""
    return ORDER.page(db, select(Organisation), limit=limit, cursor=cursor)


def all_orgs(db: Session) -> list[Organisation]:
    """Every organisation, by name: for a form's choice of one, and the CLI."""
    return list(paging.every(lambda cursor: list_orgs(db, limit=paging.MAX_LIMIT, cursor=cursor)))


def get_org(db: Session, org_id: str) -> Organisation:
    org = db.get(Organisation, org_id)
    if org is None:
        raise NotFound("No such organisation.", code="org_not_found")
    return org


def find_org(db: Session, id_or_name: str) -> Organisation:
    """By id or exact name (CLI convenience)."""
    org = db.get(Organisation, id_or_name) or db.scalar(select(Organisation).where(Organisation.name == id_or_name))
    if org is None:
        raise NotFound("No such organisation.", code="org_not_found")
    return org


def names(db: Session, ids: set[str]) -> dict[str, str]:
    """Organisation names by id, for pages that show who sent what to whom."""
    if not ids:
        return {}
    return {o.id: o.name for o in db.scalars(select(Organisation).where(Organisation.id.in_(ids)))}
