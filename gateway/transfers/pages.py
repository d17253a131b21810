"""Transfer pages: send files, the approval queue, the biller's inbox, one transfer, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import StreamingResponse

from gateway import clock
from gateway.auth.pages import AssertionField, OptionalCode, proof
from gateway.auth.service import factor_choice
from gateway.deps import AppComponents, DbSession, WriteSession
from gateway.errors import InvalidInput
from gateway.orgs.service import names as org_names
from gateway.transfers import activity, download, partners, service, views
from gateway.transfers.auth import Admin, Approver, Auditor, Downloader, Reader, Sender
from gateway.transfers.models import Direction
from gateway.users.models import Role
from gateway.users.service import active_billers, users_by_id
from gateway.web import Confirmed, Cursor, confirm_page, page_links, redirect, render, submit
from retention import policies

router = APIRouter(prefix="/transfers", include_in_schema=False)

# The same words in the <dialog> (transfer.html) and on the page without script.
EMERGENCY_QUESTION = (
    "Open emergency access to transfer {transfer} without an approver? This raises a high-severity alert, "
    "an auditor must review it, and the files can be downloaded at once."
)


def _org_names(db, transfers) -> dict[str, str]:
    return org_names(db, {t.practice_id for t in transfers} | {t.vendor_id for t in transfers})


@router.get("")
def transfers(request: Request, db: DbSession, principal: Reader, cursor: Cursor = None, inbox_cursor: Cursor = None):
    """Every transfer the caller may see and (billers) their inbox, each paged on its own."""
    page = service.list_transfers(db, principal, cursor=cursor)
    inbox = service.inbox(db, principal, cursor=inbox_cursor) if principal.user.role == Role.biller else None
    rows = page.items
    return render(
        request,
        "transfers.html",
        principal=principal,
        transfers=rows,
        links=page_links(request, page.next_cursor),
        inbox=inbox.items if inbox else [],
        inbox_links=page_links(request, inbox.next_cursor, "inbox_cursor") if inbox else None,
        orgs=_org_names(db, rows + (inbox.items if inbox else [])),
        now=clock.now(),
    )


@router.get("/approvals")
def approvals(request: Request, db: DbSession, principal: Approver, cursor: Cursor = None):
    page = service.approval_queue(db, principal, cursor=cursor)
    return render(
        request,
        "approvals.html",
        principal=principal,
        transfers=page.items,
        links=page_links(request, page.next_cursor),
        orgs=_org_names(db, page.items),
    )


@router.get("/new")
def new_transfer(request: Request, db: DbSession, c: AppComponents, principal: Sender):
    found = partners.all_partners(db, principal)
    return render(
        request,
        "transfer_new.html",
        principal=principal,
        partners=[p.org for p in found],
        billers={p.org.id: p.billers for p in found if p.billers},
        allowed=c.settings.allowed_file_types,
        max_size=c.settings.max_file_size,
        max_size_text=_size_text(c.settings.max_file_size),
        max_files=c.settings.max_files_per_transfer,
    )


def _size_text(size: int) -> str:
    """A byte count as people read it (the send page checks files against the exact count)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


@router.get("/{transfer_id}")
def transfer_page(request: Request, transfer_id: str, db: DbSession, c: AppComponents, principal: Reader):
    return _transfer_page(request, db, c, principal, transfer_id)


def _transfer_page(request, db, c, principal, transfer_id: str, status_code: int = 200, **answer):
    """The transfer's page; after a refused form, with its error and the values that form was sent with
    (`kept`: {"form id": {field: value}}), so a correction never falls back to the defaults."""
    transfer = service.find_transfer(db, principal, transfer_id)
    names = views.may_read_names(principal, transfer)
    files = [(f, views.file_name(c.keys, f) if names else None) for f in transfer.files]
    vendor_billers = []
    if principal.user.role == Role.practice_approver:
        vendor_billers = active_billers(db, [transfer.vendor_id])
    people = users_by_id(
        db, {transfer.created_by, transfer.decided_by or "", transfer.revoked_by or ""} | transfer.recipient_ids
    )
    status = transfer.status.value.replace("_", " ")
    return render(
        request,
        "transfer.html",
        status_code=status_code,
        principal=principal,
        t=transfer,
        status="waiting for approval" if status == "awaiting approval" else status,
        files=files,
        access=service.access(db, principal, transfer),
        note=views.note(c.keys, principal, transfer),
        downloads=activity.downloads_of(db, principal, transfer),
        orgs=_org_names(db, [transfer]),
        people=people,
        billers=vendor_billers,
        now=clock.now(),
        Direction=Direction,
        default_days=c.settings.default_access_days,
        max_days=policies.max_access_days(db, c.settings, transfer.practice_id, transfer.vendor_id),
        max_hours=c.settings.emergency_max_hours,
        factor=factor_choice(db, principal.user),
        emergency_question=EMERGENCY_QUESTION.format(transfer=transfer.id[:8]),
        kept=answer.pop("kept", {}),
        **answer,
    )


def _act(request, db, c, principal, transfer_id, action, kept: dict, stepup=None):
    transfer = service.find_transfer(db, principal, transfer_id)
    return submit(
        db,
        lambda: action(transfer),
        form=lambda status_code, error: _transfer_page(
            request, db, c, principal, transfer_id, status_code=status_code, error=error, kept=kept
        ),
        done=lambda _: redirect(f"/transfers/{transfer_id}"),
        stepup=stepup,
    )


def _download_limit(value: str) -> int | None:
    """Empty: no limit. Anything else must be a whole number of downloads (never read as "no limit")."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 10_000:
        raise InvalidInput(
            "The download limit is a whole number from 1 to 10000, or empty for none.", code="invalid_download_limit"
        )
    return int(value)


@router.post("/{transfer_id}/approve")
def approve(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    days: str = Form(default="", max_length=6),
    download_limit: str = Form(default="", max_length=6),
    recipient_ids: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI builds a new list per request
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
):
    kept = {"approve": {"days": days, "download_limit": download_limit, "recipient_ids": recipient_ids[:100]}}

    def run(t):
        if not days.strip().isdigit():
            raise InvalidInput("The access window is a whole number of days.", code="invalid_window")
        service.approve(
            db,
            c.settings,
            c.keys,
            principal,
            t,
            days=int(days),
            max_days=policies.max_access_days(db, c.settings, t.practice_id, t.vendor_id),
            download_limit=_download_limit(download_limit),
            recipient_ids=recipient_ids[:100],
            proof=step,
        )

    step = proof(code, passkey_assertion)
    return _act(request, db, c, principal, transfer_id, run, kept, stepup=step)


@router.post("/{transfer_id}/reject")
def reject(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    reason: str = Form(max_length=500),
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        service.find_transfer(db, principal, transfer_id)  # one that is not there is not there, confirmed or not
        return confirm_page(
            request,
            principal,
            question=f"Reject transfer {transfer_id[:8]}? The vendor never receives its files, and this cannot be undone.",
            fields={"reason": reason},
            cancel=f"/transfers/{transfer_id}",
            button="Reject",
        )
    kept = {"reject": {"reason": reason}}
    return _act(request, db, c, principal, transfer_id, lambda t: service.reject(db, principal, t, reason), kept)


@router.post("/{transfer_id}/revoke")
def revoke(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    reason: str = Form(max_length=500),
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        service.find_transfer(db, principal, transfer_id)
        return confirm_page(
            request,
            principal,
            question=f"Revoke transfer {transfer_id[:8]}? Every further download stops at once; this cannot be undone.",
            fields={"reason": reason},
            cancel=f"/transfers/{transfer_id}",
            button="Revoke now",
        )
    kept = {"revoke": {"reason": reason}}
    return _act(request, db, c, principal, transfer_id, lambda t: service.revoke(db, principal, t, reason), kept)


@router.post("/{transfer_id}/emergency-access")
def emergency(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Admin,
    hours: str = Form(default="", max_length=4),
    reason: str = Form(max_length=500),
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        service.find_transfer(db, principal, transfer_id)
        return confirm_page(
            request,
            principal,
            question=EMERGENCY_QUESTION.format(transfer=transfer_id[:8]),
            fields={"hours": hours, "reason": reason},
            cancel=f"/transfers/{transfer_id}",
            button="Open emergency access",
            factor=factor_choice(db, principal.user),
        )
    step = proof(code, passkey_assertion)

    def run(t):
        if not hours.strip().isdigit():
            raise InvalidInput("Emergency access lasts a whole number of hours.", code="invalid_window")
        service.open_emergency_access(db, c.settings, c.keys, principal, t, hours=int(hours), reason=reason, proof=step)

    return _act(
        request, db, c, principal, transfer_id, run, {"emergency": {"hours": hours, "reason": reason}}, stepup=step
    )


@router.post("/{transfer_id}/emergency-review")
def emergency_review(request: Request, transfer_id: str, db: DbSession, c: AppComponents, principal: Auditor):
    return _act(request, db, c, principal, transfer_id, lambda t: service.review_emergency(db, principal, t), {})


@router.get("/{transfer_id}/files/{file_id}/download")
def download_file(
    request: Request, transfer_id: str, file_id: str, db: WriteSession, c: AppComponents, principal: Downloader
):
    prepared = download.prepare(c, db, principal, transfer_id, file_id, request.headers.get("range"))
    return StreamingResponse(c.bulk.stream(prepared.body), status_code=prepared.status_code, headers=prepared.headers)
