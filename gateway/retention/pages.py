"""Pages: administrators' retention policies, legal holds and offboarding; auditors' certificates and tombstones."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from gateway.auth.pages import AssertionField, OptionalCode, proof
from gateway.auth.service import factor_choice
from gateway.deps import AdminPrincipal, AppComponents, DbSession
from gateway.errors import InvalidInput
from gateway.orgs.models import OrgKind
from gateway.orgs.service import all_orgs
from gateway.retention.auth import AuditorOrAdmin
from gateway.web import Confirmed, Cursor, confirm_page, page_links, redirect, render, submit
from retention import holds, policies, service
from retention.offboarding import offboard
from retention.pdf import render as render_pdf

router = APIRouter(include_in_schema=False)

# The same words in the <dialog> (retention_admin.html) and on the page without script.
RELEASE_QUESTION = (
    "Release the legal hold {reference}? What it kept becomes subject to retention and offboarding again, and may "
    "be destroyed."
)


def _names(db):
    orgs = all_orgs(db)
    return orgs, {o.id: o.name for o in orgs}


def _retention_page(
    request,
    db,
    principal,
    status_code=200,
    cursor: str | None = None,
    holds_cursor: str | None = None,
    kept=None,
    **extra,
):
    """Two lists, each paged on its own (`cursor`, `holds_cursor`); after a refused form, with the values that
    form was sent with (`kept`)."""
    orgs, names = _names(db)
    policy_page = policies.policy_page(db, cursor=cursor)
    hold_page = holds.hold_page(db, cursor=holds_cursor)
    return render(
        request,
        "retention_admin.html",
        status_code=status_code,
        principal=principal,
        policies=policy_page.items,
        links=page_links(request, policy_page.next_cursor),
        holds=hold_page.items,
        hold_links=page_links(request, hold_page.next_cursor, "holds_cursor"),
        names=names,
        practices=[o for o in orgs if o.kind == OrgKind.practice],
        vendors=[o for o in orgs if o.kind == OrgKind.vendor],
        kept=kept or {},
        release_question=RELEASE_QUESTION,
        **extra,
    )


def _days(value: str, field: str) -> int:
    """A whole number of days: anything else is refused, never read as "no value" or a default."""
    if not value.strip().isdigit():
        raise InvalidInput(f"{field} is a whole number of days.", code="invalid_days")
    return int(value)


@router.get("/admin/retention")
def retention_admin(
    request: Request, db: DbSession, principal: AdminPrincipal, cursor: Cursor = None, holds_cursor: Cursor = None
):
    return _retention_page(request, db, principal, cursor=cursor, holds_cursor=holds_cursor)


@router.post("/admin/retention/policies")
def retention_policy(
    request: Request,
    db: DbSession,
    components: AppComponents,
    principal: AdminPrincipal,
    practice_id: str = Form(max_length=64),
    vendor_id: str = Form(default="", max_length=64),
    keep_days: str = Form(default="", max_length=5),
    max_access_days: str = Form(default="", max_length=5),
):
    typed = {
        "practice_id": practice_id,
        "vendor_id": vendor_id,
        "keep_days": keep_days,
        "max_access_days": max_access_days,
    }
    return submit(
        db,
        lambda: policies.set_policy(
            db,
            components.settings,
            practice_id,
            vendor_id or None,
            keep_days=_days(keep_days, "Keep ciphertext"),
            # Empty is the one way to say "no maximum of its own".
            max_access_days=_days(max_access_days, "The maximum access window") if max_access_days.strip() else None,
            actor=principal.actor,
        ),
        form=lambda **error: _retention_page(request, db, principal, kept={"policy": typed}, **error),
        done=lambda _: redirect("/admin/retention"),
    )


@router.post("/admin/retention/holds")
def retention_hold(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    scope: str = Form(max_length=16),
    target_id: str = Form(max_length=64),
    reference: str = Form(max_length=100),
):
    return submit(
        db,
        lambda: holds.place_hold(db, scope, target_id.strip(), reference, principal.actor),
        form=lambda **error: _retention_page(
            request,
            db,
            principal,
            kept={"hold": {"scope": scope, "target_id": target_id, "reference": reference}},
            **error,
        ),
        done=lambda _: redirect("/admin/retention"),
    )


@router.post("/admin/retention/holds/{hold_id}/release")
def retention_release(
    request: Request, hold_id: str, db: DbSession, principal: AdminPrincipal, confirmed: str = Confirmed
):
    hold = holds.find_hold(db, hold_id)
    if confirmed != "yes" and hold.active:  # one released already: the form says so, nothing to confirm
        return confirm_page(
            request,
            principal,
            question=RELEASE_QUESTION.format(reference=hold.reference),
            fields={},
            cancel="/admin/retention",
            button="Release hold",
        )
    return submit(
        db,
        lambda: holds.release_hold(db, hold_id, principal.actor),
        form=lambda **error: _retention_page(request, db, principal, **error),
        done=lambda _: redirect("/admin/retention"),
    )


def _offboarding_page(request, db, principal, status_code=200, kept=None, **extra):
    orgs, names = _names(db)
    return render(
        request,
        "offboarding_admin.html",
        status_code=status_code,
        principal=principal,
        names=names,
        factor=factor_choice(db, principal.user),
        practices=[o for o in orgs if o.kind == OrgKind.practice],
        vendors=[o for o in orgs if o.kind == OrgKind.vendor],
        kept=kept or {},
        **extra,
    )


@router.get("/admin/offboarding")
def offboarding_form(request: Request, db: DbSession, principal: AdminPrincipal):
    return _offboarding_page(request, db, principal)


@router.post("/admin/offboarding")
def offboarding_run(
    request: Request,
    db: DbSession,
    components: AppComponents,
    principal: AdminPrincipal,
    vendor_id: str = Form(max_length=64),
    practice_id: str = Form(default="", max_length=64),
    reason: str = Form(max_length=500),
    confirm_name: str = Form(max_length=200),
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
    include_returned: bool = Form(default=False),
):
    step = proof(code, passkey_assertion)

    def run():  # the gate commits its step-up; offboarding commits each of its own steps
        vendor = service.check_offboarding(db, components, principal, vendor_id, confirm_name, step)
        return offboard(
            components,
            principal.actor,
            vendor.id,
            practice_ref=practice_id or None,
            reason=reason,
            include_returned=include_returned,
            via="web",
        )

    return submit(
        db,
        run,
        commit=False,
        # Refused: the form again as it was typed (never the code). Done: the report names the vendor,
        # and the form comes back empty, so a second offboarding is never one click away.
        form=lambda **error: _offboarding_page(
            request,
            db,
            principal,
            kept={
                "vendor_id": vendor_id,
                "practice_id": practice_id,
                "reason": reason,
                "confirm_name": confirm_name,
                "include_returned": include_returned,
            },
            **error,
        ),
        done=lambda report: _offboarding_page(request, db, principal, report=report),
        stepup=step,
    )


@router.get("/certificates")
def certificates_page(
    request: Request, db: DbSession, principal: AuditorOrAdmin, cursor: Cursor = None, tombstones_cursor: Cursor = None
):
    """Two lists, each paged on its own (`cursor`, `tombstones_cursor`)."""
    _, names = _names(db)
    certs = service.certificates(db, principal, cursor=cursor)
    tombs = service.tombstones(db, principal, cursor=tombstones_cursor)
    return render(
        request,
        "certificates.html",
        principal=principal,
        names=names,
        certificates=certs.items,
        links=page_links(request, certs.next_cursor),
        tombstones=tombs.items,
        tombstone_links=page_links(request, tombs.next_cursor, "tombstones_cursor"),
    )


@router.get("/certificates/{cert_id}.json")
def certificate_json(cert_id: str, db: DbSession, principal: AuditorOrAdmin):
    cert = service.find_certificate(db, principal, cert_id)
    return Response(
        cert.document,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="certificate-{cert.id}.json"'},
    )


@router.get("/certificates/{cert_id}.pdf")
def certificate_pdf(cert_id: str, db: DbSession, principal: AuditorOrAdmin):
    cert = service.find_certificate(db, principal, cert_id)
    return Response(
        render_pdf(cert.document),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-{cert.id}.pdf"'},
    )
