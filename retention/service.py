"""What the pages and the API share: who sees which certificates and tombstones, and the offboarding gate."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import paging
from gateway.audit.actions import Action
from gateway.auth.service import Principal, Proof, step_up
from gateway.components import Components
from gateway.errors import InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page
from gateway.transfers.models import Transfer, TransferFile, TransferStatus
from gateway.users.models import Role
from retention.models import Certificate, DestructionRecord


def _practice_scope(principal: Principal) -> str | None:
    """None: every practice (operators); else the auditor's own practice."""
    user = principal.user
    if user.role == Role.admin or (user.role == Role.auditor and user.org.kind == OrgKind.operator):
        return None
    return user.org_id


# Newest first, both.
CERTIFICATES = paging.Order("certificates", (Certificate.issued_at, Certificate.id), descending=True)
TOMBSTONES = paging.Order("tombstones", (TransferFile.destroyed_at, TransferFile.id), descending=True)


def certificates(
    db: Session, principal: Principal, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Certificate]:
    """One page of the certificates this caller may see (scoped in SQL), newest first."""
    query = select(Certificate)
    scope = _practice_scope(principal)
    if scope is not None:
        query = query.where(Certificate.practice_id == scope)
    return CERTIFICATES.page(db, query, limit=limit, cursor=cursor)


def find_certificate(db: Session, principal: Principal, cert_id: str) -> Certificate:
    """The certificate if this caller may see it; NotFound otherwise, identical to a missing id."""
    cert = db.get(Certificate, cert_id)
    scope = _practice_scope(principal)
    if cert is None or (scope is not None and cert.practice_id != scope):
        raise NotFound("No such certificate.", code="certificate_not_found")
    return cert


def tombstones(
    db: Session, principal: Principal, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[dict]:
    """One page of destroyed files as auditors see them (scoped in SQL), newest destruction first: ids, sizes,
    hashes, times; never content or names."""
    query = (
        select(
            TransferFile.transfer_id,
            TransferFile.id,
            TransferFile.size,
            TransferFile.sha256,
            TransferFile.created_at,
            TransferFile.destroyed_at,
            Transfer.practice_id,
            Transfer.vendor_id,
            DestructionRecord.job_id,
            DestructionRecord.crypto_shred_only,
        )
        .join(Transfer, Transfer.id == TransferFile.transfer_id)
        .join(DestructionRecord, DestructionRecord.file_id == TransferFile.id, isouter=True)
        .where(Transfer.status == TransferStatus.destroyed, TransferFile.destroyed_at.is_not(None))
    )
    scope = _practice_scope(principal)
    if scope is not None:
        query = query.where(Transfer.practice_id == scope)
    page = TOMBSTONES.page_rows(db, query, limit=limit, cursor=cursor)
    jobs = {r[8] for r in page.items if r[8] is not None}
    certs = dict(db.execute(select(Certificate.job_id, Certificate.id).where(Certificate.job_id.in_(jobs))).all())
    items = [
        {
            "transfer_id": r[0],
            "file_id": r[1],
            "size": r[2],
            "sha256": r[3],
            "created_at": r[4],
            "destroyed_at": r[5],
            "practice_id": r[6],
            "vendor_id": r[7],
            "certificate_id": certs.get(r[8]),
            "verification": "crypto-shred only" if r[9] else "verified absent",
        }
        for r in page.items
    ]
    return Page(items, page.next_cursor)


def check_offboarding(
    db: Session, c: Components, principal: Principal, vendor_id: str, confirm_name: str, proof: Proof
) -> Organisation:
    """The confirmation (the vendor's exact name typed) and a fresh factor (TOTP or passkey), before anything happens."""
    vendor = db.get(Organisation, vendor_id)
    if vendor is None or vendor.kind != OrgKind.vendor:
        raise NotFound("No such vendor: nothing was changed.", code="vendor_not_found")
    if confirm_name.strip() != vendor.name:
        raise InvalidInput(
            "Type the vendor's name exactly to confirm; nothing was changed.", code="confirmation_mismatch"
        )
    # A hijacked admin session alone must not destroy a vendor's data: ask for a fresh factor.
    step_up(db, c.settings, c.keys, principal, proof, Action.OFFBOARDING_STEPUP_FAILED)
    db.commit()
    return vendor
