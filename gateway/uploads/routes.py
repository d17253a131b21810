"""tus 1.0 at /api/v1/uploads (core, creation, creation-with-upload, termination, expiration, checksum),
plus the sender's list of unfinished uploads and the transfer made of completed ones.

Authenticated like the rest of the API (bearer token, or session cookie with the CSRF
header); an upload URL answers only its sender (anyone else gets the 404 of a missing one).
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from gateway import api_docs
from gateway.auth.service import Principal
from gateway.deps import AppComponents, require
from gateway.errors import GatewayError, InvalidInput, UnsupportedMediaType
from gateway.transfers import service as transfers
from gateway.transfers.intake import body_chunks
from gateway.transfers.schemas import TransferCreated
from gateway.uploads import service
from gateway.uploads.models import Upload
from gateway.users.models import Role
from gateway.web import request_body

router = APIRouter(prefix="/uploads", tags=["uploads"])

Sender = Annotated[Principal, Depends(require(Role.practice_staff, Role.practice_approver, Role.biller))]

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
OFFSET_TYPE = "application/offset+octet-stream"


class PreconditionFailed(GatewayError):
    status = 412
    code = "tus_version_unsupported"
    message = "Send Tus-Resumable: 1.0.0."


TusResumable = Annotated[str | None, Header(alias="Tus-Resumable", description="the protocol version: 1.0.0")]


def _tus(tus_resumable: str | None) -> None:
    """Every tus request but OPTIONS names the protocol version (412 otherwise, with the version we speak)."""
    if tus_resumable != TUS_VERSION:
        raise PreconditionFailed(headers={"Tus-Version": TUS_VERSION, "Tus-Resumable": TUS_VERSION})


UploadChecksum = Annotated[
    str | None,
    Header(alias="Upload-Checksum", description="`<algorithm> <base64 digest>` of this request's bytes (tus checksum)"),
]


def _int_header(raw: str | None, name: str, code: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise InvalidInput(f"{name} must be a non-negative integer.", code=code)
    return int(raw)


def _headers(up: Upload) -> dict[str, str]:
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(up.received),
        "Upload-Expires": service.expires_header(up.expires_at),
        "Cache-Control": "no-store",
    }


async def _append(
    request: Request, c, principal: Principal, upload_id: str, offset: int, upload_checksum: str | None
) -> Upload:
    if not request.headers.get("content-type", "").startswith(OFFSET_TYPE):
        raise UnsupportedMediaType("Send the bytes as application/offset+octet-stream.")
    checksum = service.checksum_of(upload_checksum)
    declared = _int_header(request.headers.get("content-length"), "content-length", "invalid_content_length")
    raw = body_chunks(request_body(request))

    def work() -> Upload:
        try:
            # The body arrives (a few MiB at most) while the upload is found and its lease claimed:
            # a PATCH's set-up then costs the sender no idle link.
            raw.start()
            return service.append(c, principal, upload_id, offset, raw, checksum=checksum, declared=declared)
        finally:
            raw.close()

    # A PATCH moves bytes like a direct upload: it takes one of the process's bulk places, its body unread until then.
    return await c.bulk.run_sync(work)


_STATE = {
    "Tus-Resumable": "1.0.0",
    "Upload-Offset": "the durable offset: bytes stored (whole segments)",
    "Upload-Expires": "when an unfinished upload is discarded (RFC 9110 date)",
}
_BYTES = {"content": {OFFSET_TYPE: {"schema": {"type": "string", "format": "binary"}}}}


@router.options(
    "",
    status_code=204,
    response_class=Response,
    responses={
        204: api_docs.no_body(
            "What this server speaks",
            {
                "Tus-Version": "1.0.0",
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": "the largest file, bytes",
                "Tus-Checksum-Algorithm": "the checksum algorithms accepted in Upload-Checksum",
            },
        )
    },
)
async def options(principal: Sender, c: AppComponents) -> Response:
    """What this server speaks: tus 1.0.0 with its extensions, the largest file and the checksum algorithms."""
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(c.settings.max_file_size),
            "Tus-Checksum-Algorithm": ",".join(service.CHECKSUM_ALGORITHMS),
        },
    )


@router.post(
    "",
    status_code=201,
    response_class=Response,
    responses={201: api_docs.no_body("Created", {"Location": "the upload's URL", **_STATE})},
    openapi_extra={"requestBody": {"required": False, **_BYTES}},
)
async def create(
    request: Request,
    principal: Sender,
    c: AppComponents,
    upload_length: Annotated[str | None, Header(alias="Upload-Length", description="the file's size, bytes")] = None,
    upload_metadata: Annotated[
        str | None,
        Header(
            alias="Upload-Metadata",
            description="comma-separated `key base64(value)` pairs: filename, partner_id, purpose, note, recipients",
        ),
    ] = None,
    upload_checksum: UploadChecksum = None,
    tus_resumable: TusResumable = None,
) -> Response:
    """Create an upload (metadata: filename, partner_id, purpose, note, recipients), optionally with its first bytes."""
    _tus(tus_resumable)
    length = _int_header(upload_length, "upload-length", "invalid_upload_length")
    if length is None:
        raise InvalidInput("Declare the file's size in Upload-Length.", code="invalid_upload_length")
    meta = service.parse_metadata(upload_metadata or "")
    up = await anyio.to_thread.run_sync(lambda: service.create(c, principal, meta, length))
    if request.headers.get("content-type", "").startswith(OFFSET_TYPE):
        try:
            up = await _append(request, c, principal, up.id, 0, upload_checksum)
        except GatewayError as exc:
            # The upload exists (the client resumes it with HEAD); only this body was refused.
            if exc.status >= 500:
                raise
    return Response(status_code=201, headers={**_headers(up), "Location": f"/api/v1/uploads/{up.id}"})


@router.head(
    "/{upload_id}",
    response_class=Response,
    responses={200: api_docs.no_body("Where to resume", {"Upload-Length": "the declared size, bytes", **_STATE})},
)
async def head(upload_id: str, principal: Sender, c: AppComponents) -> Response:
    """Where to resume: the durable offset (whole segments) and the declared length."""

    def work() -> Upload:
        with c.db.snapshot() as db:
            return service.find(db, principal, upload_id)

    up = await anyio.to_thread.run_sync(work)
    return Response(status_code=200, headers={**_headers(up), "Upload-Length": str(up.length)})


@router.patch(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    responses={204: api_docs.no_body("Appended", _STATE)},
    openapi_extra={"requestBody": {"required": True, **_BYTES}},
)
async def patch(
    request: Request,
    upload_id: str,
    principal: Sender,
    c: AppComponents,
    upload_offset: Annotated[
        str | None, Header(alias="Upload-Offset", description="where these bytes start: the offset HEAD answered")
    ] = None,
    upload_checksum: UploadChecksum = None,
    tus_resumable: TusResumable = None,
) -> Response:
    """Append at Upload-Offset; answers the new durable offset, which may be short of what was sent."""
    _tus(tus_resumable)
    offset = _int_header(upload_offset, "upload-offset", "invalid_upload_offset")
    if offset is None:
        raise InvalidInput("Send Upload-Offset.", code="invalid_upload_offset")
    up = await _append(request, c, principal, upload_id, offset, upload_checksum)
    return Response(status_code=204, headers=_headers(up))


@router.delete(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    responses={204: api_docs.no_body("Cancelled", {"Tus-Resumable": "1.0.0"})},
)
async def terminate(
    upload_id: str, principal: Sender, c: AppComponents, tus_resumable: TusResumable = None
) -> Response:
    """Cancel an upload: everything it stored is destroyed."""
    _tus(tus_resumable)
    await anyio.to_thread.run_sync(lambda: service.cancel(c, principal, upload_id))
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


class UploadOut(BaseModel):
    id: str
    file_name: str
    length: int
    offset: int
    state: str
    partner_id: str
    purpose: str
    created_at: str
    expires_at: str


@router.get("", response_model=list[UploadOut])
def list_uploads(principal: Sender, c: AppComponents) -> list[UploadOut]:
    """The caller's unfinished (or finished but not yet sent) uploads."""
    with c.db.snapshot() as db:
        ups = service.unfinished(db, principal)
    return [
        UploadOut(
            id=u.id,
            file_name=service.file_name(c, u),
            length=u.length,
            offset=u.received,
            state=u.state.value,
            partner_id=u.partner_id,
            purpose=u.purpose,
            created_at=u.created_at.isoformat(),
            expires_at=u.expires_at.isoformat(),
        )
        for u in ups
    ]


class TransferFromUploads(BaseModel):
    upload_ids: list[str] = Field(min_length=1, max_length=1000)


@router.post("/transfers", response_model=TransferCreated, status_code=201)
def make_transfer(body: TransferFromUploads, principal: Sender, c: AppComponents) -> TransferCreated:
    """Make one transfer of completed uploads (all or nothing); they share partner, purpose and recipients."""
    transfer_id = service.make_transfer(c, principal, body.upload_ids)
    with c.db.snapshot() as db:
        transfer = transfers.find_transfer(db, principal, transfer_id)
        return TransferCreated(id=transfer.id, status=transfer.status)
