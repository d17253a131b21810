"""Audit JSON API for auditors: search, reports, proofs, checkpoints, exports, access review, alerts."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from gateway import api_docs, clock
from gateway.audit.actions import Action
from gateway.audit.checkpoint import get_signer, latest_checkpoint, maybe_checkpoint, origin
from gateway.audit.service import recent_checkpoints, record_event
from gateway.audit.verify import log_status
from gateway.auditor import alerts as alert_service
from gateway.auditor import export, proofs, review, schemas, search
from gateway.auditor.auth import AuditorPrincipal
from gateway.auditor.search import Scope
from gateway.deps import AppComponents, DbSession, WriteSession
from gateway.errors import NotFound
from gateway.web import FullPageQuery, PageQuery, json_response
from translog.note import verifier_key

router = APIRouter(prefix="/audit", tags=["audit"])

# Sequence numbers and tree sizes are 64-bit columns, alert ids 32-bit: a larger number is bad input (422),
# which the database would otherwise refuse with an error of its own.
SEQ_MAX = 2**63 - 1
ALERT_ID_MAX = 2**31 - 1

Id = Annotated[str | None, Query(max_length=64)]
When = Annotated[str | None, Query(max_length=40)]


class Filters:
    """The shared filter query parameters, validated into an EventFilter."""

    def __init__(
        self,
        user: Id = None,
        org: Id = None,
        action: Id = None,
        outcome: Id = None,
        since: When = None,
        until: When = None,
        target_id: Id = None,
        target_type: Id = None,
    ):
        self.raw: dict[str, Any] = {
            "user": user,
            "org": org,
            "action": action,
            "outcome": outcome,
            "since": since,
            "until": until,
            "target_id": target_id,
            "target_type": target_type,
        }


FilterParams = Annotated[Filters, Depends(Filters)]


def _scope(db, principal) -> Scope:
    return Scope.of(db, principal)


@router.get("/events", response_model=schemas.EventPage)
def list_events(
    db: DbSession,
    principal: AuditorPrincipal,
    paged: PageQuery,
    filters: FilterParams,
    before: int | None = Query(default=None, ge=1, le=SEQ_MAX),
):
    """Events, newest first, paged: `X-Next-Cursor` and `Link` as every list (or `next_before` as `before`)."""
    flt = search.build_filter(db, **filters.raw)
    page = search.search(db, _scope(db, principal), flt, before=before, cursor=paged.cursor, limit=paged.limit)
    body = {"items": [search.event_dict(e) for e in page.items], "next_before": search.last_seq(page)}
    db.close()  # the snapshot ends in this thread: nothing is left for another hop (gateway/deps.py get_db)
    return paged.json(page, body)


@router.get("/events/{seq}", response_model=schemas.EventOut)
def get_event(seq: Annotated[int, Path(ge=1, le=SEQ_MAX)], db: DbSession, principal: AuditorPrincipal):
    return json_response(search.event_dict(search.get_event(db, _scope(db, principal), seq)))


@router.get("/activity", response_model=schemas.ActivityOut)
def user_activity(
    db: DbSession,
    principal: AuditorPrincipal,
    paged: FullPageQuery,
    user: str = Query(max_length=64),
    day: str = Query(max_length=10),
    after: int | None = Query(default=None, ge=0, le=SEQ_MAX),
):
    """What one user did on one day (UTC), oldest first, paged (`X-Next-Cursor`, `Link`, or `next_after`)."""
    start, end = search.day_range(day)
    flt = search.build_filter(db, user=user)
    flt = search.EventFilter(user_id=flt.user_id, since=start, until=end)
    page = search.search(
        db, _scope(db, principal), flt, before=after, cursor=paged.cursor, limit=paged.limit, ascending=True
    )
    body = {
        "user": user,
        "day": day,
        "items": [search.event_dict(e) for e in page.items],
        "next_after": search.last_seq(page),
    }
    return paged.json(page, body)


@router.get("/timeline/{target_id}", response_model=schemas.TimelineOut)
def timeline(
    target_id: str,
    db: DbSession,
    principal: AuditorPrincipal,
    paged: FullPageQuery,
    after: int | None = Query(default=None, ge=0, le=SEQ_MAX),
):
    """Every event about one target (a transfer, file, user...), oldest first, paged (`X-Next-Cursor`, `Link`,
    or `next_after`)."""
    flt = dataclasses.replace(search.build_filter(db, target_id=target_id), target_or_file=True)
    page = search.search(
        db, _scope(db, principal), flt, before=after, cursor=paged.cursor, limit=paged.limit, ascending=True
    )
    body = {
        "target_id": target_id,
        "items": [search.event_dict(e) for e in page.items],
        "next_after": search.last_seq(page),
    }
    return paged.json(page, body)


@router.get("/status", response_model=schemas.LogStatus)
def status(db: DbSession, components: AppComponents, principal: AuditorPrincipal):
    return log_status(db, components)


@router.get("/public-key", response_model=schemas.PublicKeyOut)
def public_key(components: AppComponents, principal: AuditorPrincipal):
    signer = get_signer(components)
    name = origin(components.settings)
    return {
        "key_name": name,
        "fingerprint": signer.fingerprint(),
        "public_key_pem": signer.public_key_pem().decode(),
        "verifier_key": verifier_key(name, signer.public_key_raw()),
    }


@router.get("/checkpoints", response_model=schemas.CheckpointList)
def list_checkpoints(db: DbSession, principal: AuditorPrincipal, paged: PageQuery):
    """Signed checkpoints, newest first, paged (`X-Next-Cursor`, `Link`)."""
    page = recent_checkpoints(db, paged.limit, paged.cursor)
    body = {
        "items": [
            {
                "id": c.id,
                "tree_size": c.tree_size,
                "root_hash": c.root_hash.hex(),
                "kind": c.kind.value,
                "created_at": c.created_at.isoformat(),
                "note": c.note,
            }
            for c in page.items
        ]
    }
    return paged.json(page, body)


@router.get(
    "/checkpoints/latest",
    response_class=PlainTextResponse,
    responses={200: api_docs.file_response("text/plain", "The latest checkpoint, a C2SP signed note")},
)
def latest(db: DbSession, principal: AuditorPrincipal):
    """The latest signed checkpoint as a C2SP signed note (text/plain)."""
    cp = latest_checkpoint(db)
    if cp is None:
        raise NotFound("No checkpoint has been signed yet.", code="checkpoint_not_found")
    return PlainTextResponse(cp.note)


@router.post("/checkpoints", status_code=201, response_model=schemas.CheckpointSigned)
def sign_checkpoint(components: AppComponents, principal: AuditorPrincipal):
    """Sign a checkpoint now (if the log grew since the last one)."""
    maybe_checkpoint(components, force=True)
    with components.db.sessions() as db:
        cp = latest_checkpoint(db)
        if cp is None:
            raise NotFound("The log is empty.", code="checkpoint_not_found")
        return {"id": cp.id, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "note": cp.note}


@router.get("/proofs/inclusion", response_model=schemas.InclusionProof)
def inclusion(
    db: DbSession,
    principal: AuditorPrincipal,
    seq: int = Query(ge=1, le=SEQ_MAX),
    tree_size: int | None = Query(default=None, ge=1, le=SEQ_MAX),
):
    return proofs.inclusion_proof(db, _scope(db, principal), seq, tree_size)


@router.get("/proofs/consistency", response_model=schemas.ConsistencyProof)
def consistency(
    db: DbSession,
    principal: AuditorPrincipal,
    first: int = Query(ge=1, le=SEQ_MAX),
    second: int | None = Query(default=None, ge=1, le=SEQ_MAX),
):
    return proofs.consistency_proof(db, first, second)


def _export(fmt: str, db, components, principal, filters: Filters):
    scope = _scope(db, principal)
    flt = search.build_filter(db, **filters.raw)
    db.rollback()  # release the request session before the export's own transactions
    chunks, media, size = export.start_export(components, scope, flt, fmt, principal.actor)
    name = f"phigate-audit-{clock.now():%Y%m%dT%H%M%SZ}-{size}.{fmt}"
    return StreamingResponse(
        chunks,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


_EXPORT_HEADERS = {"Content-Disposition": "attachment; the file name names the time and the tree size it covers"}


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={
        200: api_docs.file_response(
            "text/csv", "The matching events, one row each, and the signed checkpoint that covers them", _EXPORT_HEADERS
        )
    },
)
def export_csv(db: DbSession, components: AppComponents, principal: AuditorPrincipal, filters: FilterParams):
    return _export("csv", db, components, principal, filters)


@router.get(
    "/export.jsonl",
    response_class=StreamingResponse,
    responses={
        200: api_docs.file_response(
            "application/x-ndjson",
            "JSON Lines: a header line, one line per matching event, the signed checkpoint that covers them",
            _EXPORT_HEADERS,
        )
    },
)
def export_jsonl(db: DbSession, components: AppComponents, principal: AuditorPrincipal, filters: FilterParams):
    return _export("jsonl", db, components, principal, filters)


@router.get("/access-review", response_model=schemas.VendorsOut)
def access_review_vendors(db: DbSession, principal: AuditorPrincipal, paged: PageQuery):
    """The vendors the caller may review, by name, paged (`X-Next-Cursor`, `Link`)."""
    page = review.vendor_page(db, _scope(db, principal), limit=paged.limit, cursor=paged.cursor)
    return paged.json(page, {"vendors": [{"id": v.id, "name": v.name, "active": v.active} for v in page.items]})


@router.get("/access-review/{vendor_id}", response_model=schemas.AccessReviewOut)
def access_review(vendor_id: str, db: WriteSession, principal: AuditorPrincipal):
    vendor, rows = review.access_review(db, _scope(db, principal), vendor_id)
    record_event(
        db,
        Action.AUDIT_ACCESS_REVIEW_VIEWED,
        actor=principal.actor,
        target_type="organisation",
        target_id=vendor.id,
        target_org_id=vendor.id,
    )
    db.commit()
    return {
        "vendor": {"id": vendor.id, "name": vendor.name},
        "users": [
            {
                **r.__dict__,
                "created_at": r.created_at.isoformat(),
                "last_login_at": r.last_login_at.isoformat() if r.last_login_at else None,
                "last_download_at": r.last_download_at.isoformat() if r.last_download_at else None,
            }
            for r in rows
        ],
    }


@router.get("/alerts", response_model=schemas.AlertList)
def list_alerts(db: DbSession, principal: AuditorPrincipal, paged: PageQuery, open_only: bool = False):
    """Alerts about the caller's scope, newest first, paged (`X-Next-Cursor`, `Link`)."""
    page = alert_service.visible_alerts(db, _scope(db, principal), paged.limit, open_only, paged.cursor)
    body = {
        "items": [
            {
                **alert_service.alert_payload(a),
                "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
                "delivered_at": a.delivered_at.isoformat() if a.delivered_at else None,
            }
            for a in page.items
        ]
    }
    return paged.json(page, body)


@router.post("/alerts/{alert_id}/acknowledge", response_model=schemas.Acknowledged)
def acknowledge(alert_id: Annotated[int, Path(ge=1, le=ALERT_ID_MAX)], db: DbSession, principal: AuditorPrincipal):
    acknowledged_at = alert_service.acknowledge(db, _scope(db, principal), alert_id, principal)
    db.commit()
    return {"id": alert_id, "acknowledged_at": acknowledged_at.isoformat()}
