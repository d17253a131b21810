"""JSON API: certificates and tombstones (auditors, administrators); policies, holds, offboarding (administrators)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.auth.schemas import StepUpIn
from gateway.deps import AdminPrincipal, AppComponents, DbSession
from gateway.retention.auth import AuditorOrAdmin
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


@router.get("/certificates")
def list_certificates(db: DbSession, principal: AuditorOrAdmin):
    out = [_cert_out(c) for c in service.certificates(db, principal)]
    db.commit()
    return out


@router.get("/certificates/{cert_id}")
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
    responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}},
)
def get_certificate_pdf(cert_id: str, db: DbSession, principal: AuditorOrAdmin):
    cert = service.find_certificate(db, principal, cert_id)
    db.commit()
    return Response(
        render(cert.document),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-{cert.id}.pdf"'},
    )


@router.get("/retention/tombstones")
def list_tombstones(db: DbSession, principal: AuditorOrAdmin):
    out = service.tombstones(db, principal)
    db.commit()
    return out


@router.get("/retention/policies")
def list_policies(db: DbSession, principal: AdminPrincipal):
    out = [
        {
            "id": p.id,
            "practice_id": p.practice_id,
            "vendor_id": p.vendor_id,
            "keep_days": p.keep_days,
            "max_access_days": p.max_access_days,
        }
        for p in policies.list_policies(db)
    ]
    db.commit()
    return out


@router.put("/retention/policies")
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


@router.post("/retention/holds", status_code=201)
def place_hold(body: HoldIn, db: DbSession, principal: AdminPrincipal):
    hold = holds.place_hold(db, body.scope, body.target_id, body.reference, principal.actor)
    db.commit()
    return {"id": hold.id, "scope": hold.scope.value, "target_id": hold.target_id}


@router.post("/retention/holds/{hold_id}/release")
def release_hold(hold_id: str, db: DbSession, principal: AdminPrincipal):
    holds.release_hold(db, hold_id, principal.actor)
    db.commit()
    return {"id": hold_id, "released": True}


@router.post("/offboarding")
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
