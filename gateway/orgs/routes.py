"""Organisations API (administrators)."""

from fastapi import APIRouter

from gateway.deps import AdminPrincipal, DbSession
from gateway.orgs import service
from gateway.orgs.schemas import OrgCreate, OrgOut

router = APIRouter(prefix="/orgs", tags=["organisations"])


@router.get("", response_model=list[OrgOut])
def list_orgs(db: DbSession, principal: AdminPrincipal):
    return service.list_orgs(db)


@router.post("", response_model=OrgOut, status_code=201)
def create_org(body: OrgCreate, db: DbSession, principal: AdminPrincipal):
    org = service.create_org(db, body.name, body.kind, principal.actor)
    db.commit()
    return org
