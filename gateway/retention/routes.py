"""JSON API: certificates and tombstones (auditors, administrators); policies, holds, offboarding (administrators)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway import api_docs
from gateway.auth.schemas import StepUpIn
from gateway.deps import AdminPrincipal, AppComponents, DbSession
from gateway.retention.auth import AuditorOrAdmin
from gateway.web import PageQuery
from retention import holds, policies, service
from retention.offboarding import offboard
from retention.pdf import render

router = APIRouter(tags=["retention"])


class PolicyIn(BaseModel):
    practice_id: str = Field(max_length=64)
    vendor_id: str | None = Field(default=None, max_length=64)
    keep_days: int
    max_access_days: int | None = None


class HoldIn(BaseModel):
    scope: str = Field(max_length=16)
    target_id: str = Field(max_length=64)
    reference: str = Field(max_length=100)


class OffboardIn(StepUpIn):
    vendor_id: str = Field(max_length=64)
    practice_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(max_length=500)
    confirm_name: str = Field(max_length=200)
    include_returned: bool = False


class CertificateOut(BaseModel):
    id: str
    kind: str = Field(examples=["retention", "offboarding"])
    practice_id: str
    vendor_id: str
    issued_at: str
    objects: int = Field(description="how many objects were destroyed")
    crypto_shred_only: int = Field(description="of those, how many could only be crypto-shredded (not verified absent)")
    sha256: str = Field(description="the SHA-256 of the certificate document")
    key_fingerprint: str


class CertificateSignature(BaseModel):
    algorithm: str = Field(examples=["Ed25519"])
    signed: str
    public_key: str
    public_key_fingerprint: str
    value: str


class CertificateDocument(BaseModel):
    """The signed document, byte for byte as issued (canonical JSON): verify it as docs/retention.md says."""

    certificate: dict[str, Any]
    signature: CertificateSignature


class TombstoneOut(BaseModel):
    transfer_id: str
    file_id: str
    size: int
    sha256: str
    created_at: datetime
    destroyed_at: datetime | None
    practice_id: str
    vendor_id: str
    certificate_id: str | None
    verification: str = Field(examples=["verified absent", "crypto-shred only"])


class PolicyOut(BaseModel):
    id: str
    practice_id: str
    vendor_id: str | None
    keep_days: int
    max_access_days: int | None


class PolicySet(BaseModel):
    id: str
    keep_days: int
    max_access_days: int | None


class HoldOut(BaseModel):
    id: str
    scope: str
    target_id: str


class HoldReleased(BaseModel):
    id: str
    released: bool


class OffboardScope(BaseModel):
    job_id: str
    kind: str
    practice_id: str
    vendor_id: str
    destroyed: int
    crypto_shred_only: int
    held: list[dict[str, Any]] = Field(description="objects a legal hold kept")
    certificate_id: str | None
    key_evidence: dict[str, Any] | None


class OffboardReport(BaseModel):
    vendor_id: str
    practice_ids: list[str]
    users_disabled: int
    baas_terminated: int
    already_offboarded_certificates: list[str]
    scopes: list[OffboardScope]


def _cert_out(cert) -> dict:
    return {
        "id": cert.id,
        "kind": cert.kind.value,
        "practice_id": cert.practice_id,
        "vendor_id": cert.vendor_id,
        "issued_at": cert.issued_at.isoformat(),
        "objects": cert.objects,
        "crypto_shred_only": cert.crypto_shred_only,
        "sha256": cert.sha256,
        "key_fingerprint": cert.key_fingerprint,
    }


@router.get("/certificates", response_model=list[CertificateOut])
def list_certificates(db: DbSession, principal: AuditorOrAdmin, paged: PageQuery):
    """Destruction certificates, newest first, paged (`X-Next-Cursor`, `Link`)."""
    page = service.certificates(db, principal, limit=paged.limit, cursor=paged.cursor)
    out = [_cert_out(c) for c in page.items]
    db.commit()
    return paged.json(page, out)


@router.get(
    "/certificates/{cert_id}",
    response_model=CertificateDocument,
    responses={200: {"headers": {"Content-Disposition": {"schema": {"type": "string"}}}}},
)
def get_certificate(cert_id: str, db: DbSession, principal: AuditorOrAdmin):
    cert = service.find_certificate(db, principal, cert_id)
    db.commit()
    return Response(
        cert.document,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="certificate-{cert.id}.json"'},
    )


@router.get(
    "/certificates/{cert_id}/pdf",
    response_class=Response,
    responses={200: api_docs.file_response("application/pdf", "The certificate as a printable PDF")},
)
def get_certificate_pdf(cert_id: str, db: DbSession, principal: AuditorOrAdmin):
    cert = service.find_certificate(db, principal, cert_id)
    db.commit()
    return Response(
        render(cert.document),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-{cert.id}.pdf"'},
    )


@router.get("/retention/tombstones", response_model=list[TombstoneOut])
def list_tombstones(db: DbSession, principal: AuditorOrAdmin, paged: PageQuery):
    """Destroyed files, newest destruction first, paged (`X-Next-Cursor`, `Link`)."""
    page = service.tombstones(db, principal, limit=paged.limit, cursor=paged.cursor)
    db.commit()
    return paged.json(page, page.items)


@router.get("/retention/policies", response_model=list[PolicyOut])
def list_policies(db: DbSession, principal: AdminPrincipal, paged: PageQuery):
    """Retention policies by practice, paged (`X-Next-Cursor`, `Link`)."""
    page = policies.policy_page(db, limit=paged.limit, cursor=paged.cursor)
    out = [
        {
            "id": p.id,
            "practice_id": p.practice_id,
            "vendor_id": p.vendor_id,
            "keep_days": p.keep_days,
            "max_access_days": p.max_access_days,
        }
        for p in page.items
    ]
    db.commit()
    return paged.json(page, out)


@router.put("/retention/policies", response_model=PolicySet)
def put_policy(body: PolicyIn, db: DbSession, components: AppComponents, principal: AdminPrincipal):
    p = policies.set_policy(
        db,
        components.settings,
        body.practice_id,
        body.vendor_id,
        keep_days=body.keep_days,
        max_access_days=body.max_access_days,
        actor=principal.actor,
    )
    db.commit()
    return {"id": p.id, "keep_days": p.keep_days, "max_access_days": p.max_access_days}


@router.post("/retention/holds", status_code=201, response_model=HoldOut)
def place_hold(body: HoldIn, db: DbSession, principal: AdminPrincipal):
    hold = holds.place_hold(db, body.scope, body.target_id, body.reference, principal.actor)
    db.commit()
    return {"id": hold.id, "scope": hold.scope.value, "target_id": hold.target_id}


@router.post("/retention/holds/{hold_id}/release", response_model=HoldReleased)
def release_hold(hold_id: str, db: DbSession, principal: AdminPrincipal):
    holds.release_hold(db, hold_id, principal.actor)
    db.commit()
    return {"id": hold_id, "released": True}


@router.post("/offboarding", response_model=OffboardReport)
def offboard_vendor(body: OffboardIn, db: DbSession, components: AppComponents, principal: AdminPrincipal):
    vendor = service.check_offboarding(db, components, principal, body.vendor_id, body.confirm_name, body.proof())
    db.close()
    report = offboard(
        components,
        principal.actor,
        vendor.id,
        practice_ref=body.practice_id,
        reason=body.reason,
        include_returned=body.include_returned,
        via="web",
    )
    return report.as_dict()
