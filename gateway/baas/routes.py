"""BAA API (administrators)."""

from datetime import UTC

from fastapi import APIRouter

from gateway.baas import service
from gateway.baas.schemas import BaaCreate, BaaOut, BaaTerminate
from gateway.deps import AdminPrincipal, DbSession
from gateway.orgs.service import get_org

router = APIRouter(prefix="/baas", tags=["baas"])


def _aware(dt):
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("", response_model=list[BaaOut])
def list_baas(db: DbSession, principal: AdminPrincipal):
    return service.list_baas(db)


@router.post("", response_model=BaaOut, status_code=201)
def record_baa(body: BaaCreate, db: DbSession, principal: AdminPrincipal):
    baa = service.record_baa(db, get_org(db, body.practice_id), get_org(db, body.vendor_id), body.reference,
                             _aware(body.effective_at), _aware(body.expires_at), principal.actor)
    db.commit()
    return baa


@router.post("/{baa_id}/terminate", response_model=BaaOut)
def terminate_baa(baa_id: str, body: BaaTerminate, db: DbSession, principal: AdminPrincipal):
    baa = service.get_baa(db, baa_id)
    service.terminate_baa(db, baa, body.reason, principal.actor)
    db.commit()
    return baa
