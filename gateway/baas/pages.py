"""Administrator pages for BAAs."""

from datetime import UTC, datetime

from fastapi import APIRouter, Form, Request

from gateway.baas import service
from gateway.deps import AdminPrincipal, DbSession
from gateway.errors import InvalidInput
from gateway.orgs.models import OrgKind
from gateway.orgs.service import all_orgs, get_org
from gateway.web import Confirmed, Cursor, confirm_page, page_links, redirect, render, submit

router = APIRouter(prefix="/admin/baas", include_in_schema=False)

TERMINATE_QUESTION = "Terminate BAA {reference}? Every download between its practice and vendor stops at once."


def _page(request, db, principal, status_code=200, cursor: str | None = None, kept=None, **extra):
    """The BAAs page; after a refused form, with the values that form was sent with (`kept`)."""
    orgs = all_orgs(db)
    page = service.list_baas(db, cursor=cursor)
    return render(
        request,
        "admin_baas.html",
        status_code=status_code,
        principal=principal,
        baas=page.items,
        links=page_links(request, page.next_cursor),
        names={o.id: o.name for o in orgs},
        terminate_question=TERMINATE_QUESTION,
        practices=[o for o in orgs if o.kind == OrgKind.practice],
        vendors=[o for o in orgs if o.kind == OrgKind.vendor],
        kept=kept or {},
        **extra,
    )


def _date(value: str, field: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{field}: use YYYY-MM-DD.", code="invalid_date") from None


@router.get("")
def baas(request: Request, db: DbSession, principal: AdminPrincipal, cursor: Cursor = None):
    return _page(request, db, principal, cursor=cursor)


@router.post("")
def record(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    practice_id: str = Form(max_length=64),
    vendor_id: str = Form(max_length=64),
    reference: str = Form(max_length=100),
    effective: str = Form(max_length=10),
    expires: str = Form(default="", max_length=10),
):
    def run():
        effective_at = _date(effective, "Effective date")
        if effective_at is None:
            raise InvalidInput("Give the effective date.", code="invalid_date")
        service.record_baa(
            db,
            get_org(db, practice_id),
            get_org(db, vendor_id),
            reference,
            effective_at,
            _date(expires, "Expiry date"),
            principal.actor,
        )

    typed = {
        "practice_id": practice_id,
        "vendor_id": vendor_id,
        "reference": reference,
        "effective": effective,
        "expires": expires,
    }
    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, kept={"record": typed}, **error),
        done=lambda _: redirect("/admin/baas"),
    )


@router.post("/{baa_id}/terminate")
def terminate(
    request: Request,
    baa_id: str,
    db: DbSession,
    principal: AdminPrincipal,
    reason: str = Form(max_length=200),
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        baa = service.get_baa(db, baa_id)
        return confirm_page(
            request,
            principal,
            question=TERMINATE_QUESTION.format(reference=baa.reference),
            fields={"reason": reason},
            cancel="/admin/baas",
            button="Terminate",
        )

    def run():
        if not reason.strip():
            raise InvalidInput("Give a reason.", code="reason_required")
        service.terminate_baa(db, service.get_baa(db, baa_id), reason, principal.actor)

    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, kept={"terminate": {baa_id: reason}}, **error),
        done=lambda _: redirect("/admin/baas"),
    )
