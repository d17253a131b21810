"""Transfers API: upload (raw body or multipart), list, approve, reject, revoke, emergency access, download."""

from __future__ import annotations

from email.message import Message
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from gateway import api_docs
from gateway.auth.service import Principal
from gateway.components import Components
from gateway.deps import AppComponents, Caller, DbSession, WriteSession
from gateway.errors import InvalidInput, UnsupportedMediaType
from gateway.transfers import activity, download, listing, partners, service, upload, views
from gateway.transfers.auth import (
    Admin,
    Approver,
    Auditor,
    Downloader,
    ListApprover,
    ListBiller,
    ListReader,
    Reader,
    Sender,
)
from gateway.transfers.intake import IncomingFile, MultipartReader, body_chunks
from gateway.transfers.models import TransferStatus
from gateway.transfers.schemas import (
    ApproveIn,
    EmergencyIn,
    PartnerOut,
    ReasonIn,
    RecipientOut,
    TransferCreated,
    TransferDetail,
    TransferOut,
)
from gateway.web import PageQuery, PageRequest, request_body
from retention import policies

router = APIRouter(prefix="/transfers", tags=["transfers"])
# Whom a sender may address: asked before an upload, so it sits beside it (gateway/transfers/partners.py).
partners_router = APIRouter(prefix="/partners", tags=["partners"])


def _from_multipart(c, principal: Principal, content_type: str, raw) -> str:
    """Fields first (who, why), then the files, each streamed into the encryptor as it arrives."""
    parts = MultipartReader(content_type, raw).parts()
    fields: dict[str, list[str]] = {}
    first: IncomingFile | None = None
    for name, value in parts:
        if isinstance(value, IncomingFile):
            first = value
            break
        fields.setdefault(name, []).append(value)

    def files():
        if first is not None:
            yield first
        for _, value in parts:
            if not isinstance(value, IncomingFile):
                raise InvalidInput("Send the form fields before the files.", code="fields_after_files")
            yield value

    request = upload.Request(
        partner_id=(fields.get("partner_id") or [""])[0],
        purpose=(fields.get("purpose") or [""])[0],
        note=(fields.get("note") or [""])[0][:2000],
        biller_ids=[b for b in fields.get("biller_ids", []) if b],
    )
    return upload.receive(c, principal, request, files())


def _filename_from(header: str) -> str:
    """The file name of a `Content-Disposition` request header (RFC 6266, `filename*` per RFC 5987)."""
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    if not name:
        raise InvalidInput("Name the file in a Content-Disposition header.", code="invalid_file_name")
    return name


@router.post(
    "",
    response_model=TransferCreated,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "description": "The fields first, then the files (each part's file name is the file's name)",
                        "required": ["partner_id", "purpose", "files"],
                        "properties": {
                            "partner_id": {"type": "string", "description": "a partner's id (GET /api/v1/partners)"},
                            "purpose": {"type": "string", "description": "the purpose or ticket reference"},
                            "note": {"type": "string"},
                            "biller_ids": {"type": "array", "items": {"type": "string"}},
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1},
                        },
                    }
                },
            },
        }
    },
)
async def create_transfer(
    request: Request,
    c: AppComponents,
    principal: Sender,
    partner_id: str | None = Query(default=None, max_length=64),
    biller_id: list[str] = Query(default=[], max_length=100),
    content_disposition: Annotated[
        str | None,
        Header(
            alias="Content-Disposition",
            description="Raw body only: the file's name, `attachment; filename*=UTF-8''<percent-encoded name>`",
        ),
    ] = None,
    x_purpose: Annotated[
        str | None,
        Header(alias="X-Purpose", description="Raw body only: the purpose or ticket reference (1-100 characters)"),
    ] = None,
    x_note: Annotated[
        str | None, Header(alias="X-Note", description="Raw body only: an optional note, percent-encoded (UTF-8)")
    ] = None,
):
    """Upload one file (raw body, name in `Content-Disposition`, purpose in `X-Purpose`) or several (multipart).

    Practice staff send to a vendor (`partner_id` = vendor id); billers send back to a practice.
    The body is encrypted as it streams; nothing is visible unless every file was stored.
    """
    content_type = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    limit = c.settings.max_file_size * c.settings.max_files_per_transfer
    if length and length.isdigit() and int(length) > limit:
        raise upload.FileTooLarge(f"A file may be at most {c.settings.max_file_size} bytes.")
    raw = body_chunks(request_body(request))
    if content_type.startswith("multipart/form-data"):

        def work():
            return _from_multipart(c, principal, content_type, raw)
    elif content_type.startswith("application/octet-stream"):
        if length and length.isdigit() and int(length) > c.settings.max_file_size:
            raise upload.FileTooLarge(f"A file may be at most {c.settings.max_file_size} bytes.")
        name = _filename_from(content_disposition or "")
        req = upload.Request(
            partner_id=partner_id or "",
            purpose=x_purpose or "",
            note=unquote(x_note or "")[:2000],
            biller_ids=biller_id,
        )

        def work():
            return upload.receive(c, principal, req, iter([IncomingFile(name, raw)]))
    else:
        raise UnsupportedMediaType("Send application/octet-stream or multipart/form-data.")

    def closing_work() -> TransferCreated:
        try:
            transfer_id = work()
        finally:
            raw.close()  # stop reading the body as soon as the upload ends, however it ends
        with c.db.snapshot() as db:
            transfer = service.find_transfer(db, principal, transfer_id)
            return TransferCreated(id=transfer.id, status=transfer.status)

    return await c.bulk.run_sync(closing_work)


_PAGE = TypeAdapter(list[TransferOut])


def _page(
    paged: PageRequest,
    db: Session,
    c: Components,
    caller: Caller,
    status: TransferStatus | None = None,
    where: ColumnElement[bool] | None = None,
) -> Response:
    """One page of transfers (gateway/transfers/listing.py), encoded here in the handler's thread; the next page's
    address in `Link` (RFC 8288) and its cursor in `X-Next-Cursor`.

    Returned as a finished response: for a list FastAPI would validate the items again in another thread hop and
    encode them on the event loop, which the lists (the busiest reads) must not hold up. The read session is
    closed here too, so that nothing of the request is left for another thread. Who is calling is found here as
    well (deps.Caller): one thread hop for the whole request.
    """
    principal = caller()
    page = listing.page(db, c.keys, principal, status=status, where=where, limit=paged.limit, cursor=paged.cursor)
    db.close()
    return paged.json(page, _PAGE.dump_json(page.items))


_PARTNERS = TypeAdapter(list[PartnerOut])


@partners_router.get("", response_model=list[PartnerOut])
def list_partners(db: DbSession, principal: Sender, paged: PageQuery):
    """The organisations the caller may send to right now (a BAA in force), by name, each with the billers an
    upload to it may name in `biller_ids`. Start an upload here: `partner_id` is one of these ids."""
    page = partners.partners(db, principal, limit=paged.limit, cursor=paged.cursor)
    items = [
        PartnerOut(
            id=p.org.id,
            name=p.org.name,
            kind=p.org.kind.value,
            billers=[RecipientOut(id=b.id, full_name=b.full_name) for b in p.billers],
        )
        for p in page.items
    ]
    return paged.json(page, _PARTNERS.dump_json(items))


@router.get("", response_model=list[TransferOut])
def list_transfers(
    db: DbSession, c: AppComponents, caller: ListReader, paged: PageQuery, status: TransferStatus | None = None
):
    """Transfers visible to the caller, newest first: their practice's, or (billers) those approved for them."""
    return _page(paged, db, c, caller, status)


@router.get("/inbox", response_model=list[TransferOut])
def inbox(db: DbSession, c: AppComponents, caller: ListBiller, paged: PageQuery):
    status, where = service.inbox_filter()
    return _page(paged, db, c, caller, status, where)


@router.get("/approvals", response_model=list[TransferOut])
def approvals(db: DbSession, c: AppComponents, caller: ListApprover, paged: PageQuery):
    status, where = service.approval_filter()
    return _page(paged, db, c, caller, status, where)


@router.get("/{transfer_id}", response_model=TransferDetail)
def get_transfer(transfer_id: str, db: DbSession, c: AppComponents, principal: Reader):
    """The transfer; for its sending organisation, also who downloaded which file, when, fully or partly."""
    transfer = service.find_transfer(db, principal, transfer_id)
    return views.transfer_detail(c.keys, principal, transfer, activity.downloads_of(db, principal, transfer))


@router.post("/{transfer_id}/approve", response_model=TransferOut)
def approve(transfer_id: str, body: ApproveIn, db: DbSession, c: AppComponents, principal: Approver):
    """Release to the vendor for `days` (step-up: a fresh TOTP `code` or a `passkey_assertion`). The uploader can
    never approve."""
    transfer = service.find_transfer(db, principal, transfer_id)
    service.approve(
        db,
        c.settings,
        c.keys,
        principal,
        transfer,
        days=body.days,
        max_days=policies.max_access_days(db, c.settings, transfer.practice_id, transfer.vendor_id),
        download_limit=body.download_limit,
        recipient_ids=body.recipient_ids,
        proof=body.proof(),
    )
    db.commit()
    return views.transfer_out(c.keys, principal, transfer)


@router.post("/{transfer_id}/reject", response_model=TransferOut)
def reject(transfer_id: str, body: ReasonIn, db: DbSession, c: AppComponents, principal: Approver):
    transfer = service.find_transfer(db, principal, transfer_id)
    service.reject(db, principal, transfer, body.reason)
    db.commit()
    return views.transfer_out(c.keys, principal, transfer)


@router.post("/{transfer_id}/revoke", response_model=TransferOut)
def revoke(transfer_id: str, body: ReasonIn, db: DbSession, c: AppComponents, principal: Approver):
    transfer = service.find_transfer(db, principal, transfer_id)
    service.revoke(db, principal, transfer, body.reason)
    db.commit()
    return views.transfer_out(c.keys, principal, transfer)


@router.post("/{transfer_id}/emergency-access", response_model=TransferOut)
def emergency_access(transfer_id: str, body: EmergencyIn, db: DbSession, c: AppComponents, principal: Admin):
    """Emergency access procedure: an administrator releases a waiting transfer for a few hours, with a reason."""
    transfer = service.find_transfer(db, principal, transfer_id)
    service.open_emergency_access(
        db, c.settings, c.keys, principal, transfer, hours=body.hours, reason=body.reason, proof=body.proof()
    )
    db.commit()
    return views.transfer_out(c.keys, principal, transfer)


@router.post("/{transfer_id}/emergency-review", response_model=TransferOut)
def emergency_review(transfer_id: str, db: DbSession, c: AppComponents, principal: Auditor):
    transfer = service.find_transfer(db, principal, transfer_id)
    service.review_emergency(db, principal, transfer)
    db.commit()
    return views.transfer_out(c.keys, principal, transfer)


@router.get(
    "/{transfer_id}/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={
        200: api_docs.file_response(
            "application/octet-stream",
            "The file, decrypted",
            {
                "Content-Disposition": "attachment, with the file's name (RFC 6266)",
                "X-Content-SHA256": "the SHA-256 of the whole file, hex",
                "Repr-Digest": "the SHA-256 of the whole file (RFC 9530)",
            },
        ),
        206: api_docs.file_response(
            "application/octet-stream",
            "The requested byte range of the file",
            {"Content-Range": "bytes <first>-<last>/<size>", "X-Content-SHA256": "the SHA-256 of the whole file, hex"},
        ),
    },
)
def download_file(
    transfer_id: str,
    file_id: str,
    db: WriteSession,
    c: AppComponents,
    principal: Downloader,
    range_: Annotated[str | None, Header(alias="Range", description="One range, `bytes=<first>-[<last>]`")] = None,
):
    """Download (decrypted as it streams); supports one `Range: bytes=` range to resume. Every attempt is logged."""
    prepared = download.prepare(c, db, principal, transfer_id, file_id, range_)
    return StreamingResponse(c.bulk.stream(prepared.body), status_code=prepared.status_code, headers=prepared.headers)
