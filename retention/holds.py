"""Legal holds: on a transfer, a vendor or a practice; nothing under an active hold is destroyed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page
from gateway.transfers.models import Transfer
from retention.models import HoldScope, LegalHold


def place_hold(db: Session, scope: str, target_id: str, reference: str, actor: Actor) -> LegalHold:
    """Suspend destruction of everything in scope until released; audited."""
    try:
        scope_ = HoldScope(scope)
    except ValueError:
        raise InvalidInput("A hold is on a transfer, a vendor or a practice.", code="invalid_hold_scope") from None
    reference = " ".join(reference.split())
    if not reference or len(reference) > 100:
        raise InvalidInput("Give the matter or case reference (at most 100 characters).", code="invalid_reference")
    if scope_ == HoldScope.transfer:
        transfer = db.get(Transfer, target_id)
        if transfer is None:
            raise NotFound("No such transfer.", code="transfer_not_found")
        org_id = transfer.practice_id
    else:
        org = db.get(Organisation, target_id)
        if org is None or org.kind != OrgKind(scope_.value):
            raise NotFound(f"No such {scope_.value}.", code=f"{scope_.value}_not_found")
        org_id = org.id
    hold = LegalHold(
        scope=scope_, target_id=target_id, reference=reference, created_at=clock.now(), created_by=actor.user_id
    )
    db.add(hold)
    db.flush()
    record_event(
        db,
        Action.RETENTION_HOLD_PLACED,
        actor=actor,
        severity=Severity.warning,
        target_type="legal_hold",
        target_id=hold.id,
        target_org_id=org_id,
        details={"scope": scope_.value, "scope_id": target_id},
    )
    return hold


def find_hold(db: Session, hold_id: str) -> LegalHold:
    hold = db.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound("No such hold.", code="hold_not_found")
    return hold


def release_hold(db: Session, hold_id: str, actor: Actor) -> LegalHold:
    hold = find_hold(db, hold_id)
    if hold.released_at is not None:
        raise Conflict("This hold was already released.", code="hold_released")
    hold.released_at, hold.released_by = clock.now(), actor.user_id
    record_event(
        db,
        Action.RETENTION_HOLD_RELEASED,
        actor=actor,
        severity=Severity.warning,
        target_type="legal_hold",
        target_id=hold.id,
        details={"scope": hold.scope.value, "scope_id": hold.target_id},
    )
    return hold


# Newest first.
ORDER = paging.Order("holds", (LegalHold.created_at, LegalHold.id), descending=True)


def hold_page(
    db: Session, *, active_only: bool = False, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[LegalHold]:
    """One page of legal holds (only those not released, when asked), newest first."""
    query = select(LegalHold)
    if active_only:
        query = query.where(LegalHold.released_at.is_(None))
    return ORDER.page(db, query, limit=limit, cursor=cursor)


def list_holds(db: Session, *, active_only: bool = False) -> list[LegalHold]:
    """Every legal hold, newest first (the CLI)."""
    return list(
        paging.every(lambda cursor: hold_page(db, active_only=active_only, limit=paging.MAX_LIMIT, cursor=cursor))
    )


def holds_on_pair(db: Session, practice_id: str, vendor_id: str) -> tuple[list[LegalHold], list[LegalHold]]:
    """(holds covering the whole pair: on the practice or the vendor, holds on single transfers of the pair)."""
    active = LegalHold.released_at.is_(None)
    whole = list(
        db.scalars(
            select(LegalHold).where(
                active,
                (
                    ((LegalHold.scope == HoldScope.practice) & (LegalHold.target_id == practice_id))
                    | ((LegalHold.scope == HoldScope.vendor) & (LegalHold.target_id == vendor_id))
                ),
            )
        )
    )
    single = list(
        db.scalars(
            select(LegalHold)
            .join(Transfer, Transfer.id == LegalHold.target_id)
            .where(
                active,
                LegalHold.scope == HoldScope.transfer,
                Transfer.practice_id == practice_id,
                Transfer.vendor_id == vendor_id,
            )
        )
    )
    return whole, single
