"""BAAs: recorded by administrators; checked at the moment of every upload, approval and download."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.baas.models import Baa, BaaStatus
from gateway.errors import Forbidden, InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page

# Newest first.
ORDER = paging.Order("baas", (Baa.created_at, Baa.id), descending=True)


def record_baa(
    db: Session,
    practice: Organisation,
    vendor: Organisation,
    reference: str,
    effective_at: datetime,
    expires_at: datetime | None,
    actor: Actor,
) -> Baa:
    """Record a signed BAA between a practice and a vendor."""
    if practice.kind != OrgKind.practice or vendor.kind != OrgKind.vendor:
        raise InvalidInput("A BAA is between a practice and a vendor.", code="baa_parties")
    if expires_at is not None and expires_at <= effective_at:
        raise InvalidInput("The BAA must expire after it takes effect.", code="baa_dates")
    reference = " ".join(reference.split())
    if not reference:
        raise InvalidInput("Give the BAA's reference.", code="baa_reference")
    baa = Baa(
        practice_id=practice.id,
        vendor_id=vendor.id,
        reference=reference,
        status=BaaStatus.active,
        effective_at=effective_at,
        expires_at=expires_at,
        created_at=clock.now(),
        created_by=actor.user_id,
    )
    db.add(baa)
    db.flush()
    record_event(
        db,
        Action.BAA_RECORDED,
        actor=actor,
        target_type="baa",
        target_id=baa.id,
        target_org_id=practice.id,
        details={
            "vendor_id": vendor.id,
            "effective_at": effective_at.isoformat(),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return baa


def terminate_baa(db: Session, baa: Baa, reason: str, actor: Actor) -> None:
    """Terminate at once: downloads under it stop with the next request."""
    if baa.status == BaaStatus.terminated:
        return
    baa.status = BaaStatus.terminated
    baa.terminated_at = clock.now()
    baa.terminated_reason = reason[:200]
    record_event(
        db,
        Action.BAA_TERMINATED,
        actor=actor,
        severity=Severity.warning,
        target_type="baa",
        target_id=baa.id,
        target_org_id=baa.practice_id,
        details={"vendor_id": baa.vendor_id},
    )


def list_baas(db: Session, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None) -> Page[Baa]:
    """One page of BAAs, newest first."""
    return ORDER.page(db, select(Baa), limit=limit, cursor=cursor)


def get_baa(db: Session, baa_id: str) -> Baa:
    baa = db.get(Baa, baa_id)
    if baa is None:
        raise NotFound("No such BAA.", code="baa_not_found")
    return baa


def expiring(db: Session, within: timedelta, now: datetime | None = None) -> list[Baa]:
    """Active BAAs that end within `within`: renew them, or transfers to the vendor stop."""
    now = now or clock.now()
    return list(
        db.scalars(
            select(Baa)
            .where(Baa.status == BaaStatus.active, Baa.expires_at.is_not(None), Baa.expires_at <= now + within)
            .order_by(Baa.expires_at)
        )
    )


def active_baa(db: Session, practice_id: str, vendor_id: str, at: datetime | None = None) -> Baa | None:
    at = at or clock.now()
    for baa in db.scalars(
        select(Baa).where(Baa.practice_id == practice_id, Baa.vendor_id == vendor_id, Baa.status == BaaStatus.active)
    ):
        if baa.in_force(at):
            return baa
    return None


def require_active_baa(db: Session, practice_id: str, vendor_id: str) -> Baa:
    baa = active_baa(db, practice_id, vendor_id)
    if baa is None:
        raise Forbidden("There is no BAA in force between this practice and this vendor.", code="baa_not_active")
    return baa
