"""BAA API (administrators)."""

from datetime import UTC

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gateway import api_docs
from gateway.baas import copies, service
from gateway.baas.schemas import BaaCreate, BaaOut, BaaTerminate
from gateway.deps import AdminPrincipal, AppComponents, DbSession
from gateway.errors import UnsupportedMediaType
from gateway.orgs.service import get_org
from gateway.transfers.intake import body_chunks
from gateway.web import PageQuery, request_body

router = APIRouter(prefix="/baas", tags=["baas"])


def _aware(dt):
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("", response_model=list[BaaOut])
def list_baas(db: DbSession, principal: AdminPrincipal, paged: PageQuery):
    """BAAs, newest first, paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(service.list_baas(db, limit=paged.limit, cursor=paged.cursor))


@router.post("", response_model=BaaOut, status_code=201)
def record_baa(body: BaaCreate, db: DbSession, principal: AdminPrincipal):
    baa = service.record_baa(
        db,
        get_org(db, body.practice_id),
        get_org(db, body.vendor_id),
        body.reference,
        _aware(body.effective_at),
        _aware(body.expires_at),
        principal.actor,
    )
    db.commit()
    return baa


@router.post("/{baa_id}/terminate", response_model=BaaOut)
def terminate_baa(baa_id: str, body: BaaTerminate, db: DbSession, principal: AdminPrincipal):
    baa = service.get_baa(db, baa_id)
    service.terminate_baa(db, baa, body.reason, principal.actor)
    db.commit()
    return baa


@router.put(
    "/{baa_id}/signed-copy",
    response_model=BaaOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The signed BAA, a PDF (sent as application/pdf, or as application/octet-stream)",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_signed_copy(baa_id: str, request: Request, c: AppComponents, principal: AdminPrincipal):
    """Store the signed BAA (a PDF, raw body), encrypted under the practice's key; replaces any earlier copy."""
    if request.headers.get("content-type", "").split(";")[0] not in ("application/pdf", "application/octet-stream"):
        raise UnsupportedMediaType("Send the signed BAA as application/pdf.")
    raw = body_chunks(request_body(request))

    def work():
        try:
            return copies.store_copy(c, baa_id, raw, principal.actor)
        finally:
            raw.close()

    return await c.bulk.run_sync(work)


@router.get(
    "/{baa_id}/signed-copy",
    response_class=StreamingResponse,
    responses={
        200: api_docs.file_response(
            "application/pdf",
            "The signed BAA, decrypted",
            {"X-Content-SHA256": "the SHA-256 of the signed copy, hex"},
        )
    },
)
def get_signed_copy(baa_id: str, c: AppComponents, principal: AdminPrincipal):
    baa, body = copies.read_copy(c, baa_id, principal.actor)
    headers = {"Content-Disposition": 'attachment; filename="signed-baa.pdf"', "Content-Length": str(baa.copy_size)}
    if baa.copy_sha256 is not None:  # recorded with every stored copy
        headers["X-Content-SHA256"] = baa.copy_sha256
    return StreamingResponse(c.bulk.stream(body), media_type="application/pdf", headers=headers)
