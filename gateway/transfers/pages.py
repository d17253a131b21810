"""Transfer pages: send files, the approval queue, the biller's inbox, one transfer, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import StreamingResponse

from gateway import clock
from gateway.auth.pages import AssertionField, OptionalCode, proof
from gateway.auth.service import factor_choice
from gateway.deps import AppComponents, DbSession, WriteSession
from gateway.orgs.service import names as org_names
from gateway.transfers import download, partners, service, views
from gateway.transfers.auth import Admin, Approver, Auditor, Downloader, Reader, Sender
from gateway.transfers.models import Direction
from gateway.users.models import Role
from gateway.users.service import active_billers, users_by_id
from gateway.web import Cursor, page_links, redirect, render, submit
from retention import policies

router = APIRouter(prefix="/transfers", include_in_schema=False)


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
        allowed=", ".join(c.settings.allowed_file_types),
        max_mb=c.settings.max_file_size // (1024 * 1024),
    )


@router.get("/{transfer_id}")
def transfer_page(
    request: Request, transfer_id: str, db: DbSession, c: AppComponents, principal: Reader, error: str | None = None
):
    transfer = service.find_transfer(db, principal, transfer_id)
    names = views.may_read_names(principal, transfer)
    files = [(f, views.file_name(c.keys, f) if names else None) for f in transfer.files]
    vendor_billers = []
    if principal.user.role == Role.practice_approver:
        vendor_billers = active_billers(db, [transfer.vendor_id])
    people = users_by_id(
        db, {transfer.created_by, transfer.decided_by or "", transfer.revoked_by or ""} | transfer.recipient_ids
    )
    return render(
        request,
        "transfer.html",
        principal=principal,
        t=transfer,
        files=files,
        note=views.note(c.keys, principal, transfer),
        orgs=_org_names(db, [transfer]),
        people=people,
        billers=vendor_billers,
        now=clock.now(),
        error=error,
        Direction=Direction,
        default_days=c.settings.default_access_days,
        max_days=c.settings.max_access_days,
        max_hours=c.settings.emergency_max_hours,
        factor=factor_choice(db, principal.user),
    )


def _act(request, db, c, principal, transfer_id, action):
    transfer = service.find_transfer(db, principal, transfer_id)
    # The transfer's page again, with the error (status 200: the page itself is fine).
    return submit(
        db,
        lambda: action(transfer),
        form=lambda status_code, error: transfer_page(request, transfer_id, db, c, principal, error=error),
        done=lambda _: redirect(f"/transfers/{transfer_id}"),
    )


@router.post("/{transfer_id}/approve")
def approve(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    days: int = Form(ge=1, le=366),
    download_limit: str = Form(default="", max_length=6),
    recipient_ids: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI builds a new list per request
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
):
    limit = int(download_limit) if download_limit.strip().isdigit() else None
    return _act(
        request,
        db,
        c,
        principal,
        transfer_id,
        lambda t: service.approve(
            db,
            c.settings,
            c.keys,
            principal,
            t,
            days=days,
            max_days=policies.max_access_days(db, c.settings, t.practice_id, t.vendor_id),
            download_limit=limit,
            recipient_ids=recipient_ids[:100],
            proof=proof(code, passkey_assertion),
        ),
    )


@router.post("/{transfer_id}/reject")
def reject(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    reason: str = Form(max_length=500),
):
    return _act(request, db, c, principal, transfer_id, lambda t: service.reject(db, principal, t, reason))


@router.post("/{transfer_id}/revoke")
def revoke(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Approver,
    reason: str = Form(max_length=500),
):
    return _act(request, db, c, principal, transfer_id, lambda t: service.revoke(db, principal, t, reason))


@router.post("/{transfer_id}/emergency-access")
def emergency(
    request: Request,
    transfer_id: str,
    db: DbSession,
    c: AppComponents,
    principal: Admin,
    hours: int = Form(ge=1, le=72),
    reason: str = Form(max_length=500),
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
):
    return _act(
        request,
        db,
        c,
        principal,
        transfer_id,
        lambda t: service.open_emergency_access(
            db, c.settings, c.keys, principal, t, hours=hours, reason=reason, proof=proof(code, passkey_assertion)
        ),
    )


@router.post("/{transfer_id}/emergency-review")
def emergency_review(request: Request, transfer_id: str, db: DbSession, c: AppComponents, principal: Auditor):
    return _act(request, db, c, principal, transfer_id, lambda t: service.review_emergency(db, principal, t))


@router.get("/{transfer_id}/files/{file_id}/download")
def download_file(
    request: Request, transfer_id: str, file_id: str, db: WriteSession, c: AppComponents, principal: Downloader
):
    prepared = download.prepare(c, db, principal, transfer_id, file_id, request.headers.get("range"))
    return StreamingResponse(c.bulk.stream(prepared.body), status_code=prepared.status_code, headers=prepared.headers)
