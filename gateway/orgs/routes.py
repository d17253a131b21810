"""Organisations API (administrators)."""

from fastapi import APIRouter

from gateway.deps import AdminPrincipal, DbSession
from gateway.orgs import service
from gateway.orgs.schemas import OrgCreate, OrgHoursIn, OrgOut
from gateway.web import PageQuery

router = APIRouter(prefix="/orgs", tags=["organisations"])


@router.get("", response_model=list[OrgOut])
def list_orgs(db: DbSession, principal: AdminPrincipal, paged: PageQuery):
    """Organisations by name, paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(service.list_orgs(db, limit=paged.limit, cursor=paged.cursor))


@router.post("", response_model=OrgOut, status_code=201)
def create_org(body: OrgCreate, db: DbSession, principal: AdminPrincipal):
    org = service.create_org(
        db, body.name, body.kind, principal.actor, timezone=body.timezone, signin_hours=body.signin_hours
    )
    db.commit()
    return org


@router.patch("/{org_id}", response_model=OrgOut)
def set_org_hours(org_id: str, body: OrgHoursIn, db: DbSession, principal: AdminPrincipal):
    """Set the organisation's time zone and sign-in hours (null: back to the operator's)."""
    org = service.set_hours(db, org_id, principal.actor, timezone=body.timezone, signin_hours=body.signin_hours)
    db.commit()
    return org
