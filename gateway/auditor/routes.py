"""Audit JSON API for auditors: search, reports, proofs, checkpoints, exports, access review, alerts."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.checkpoint import get_signer, latest_checkpoint, maybe_checkpoint, origin
from gateway.audit.service import recent_checkpoints, record_event
from gateway.audit.verify import log_status
from gateway.auditor import alerts as alert_service
from gateway.auditor import export, proofs, review, search
from gateway.auditor.auth import AuditorPrincipal
from gateway.auditor.search import Scope
from gateway.deps import AppComponents, DbSession, WriteSession
from gateway.errors import NotFound
from gateway.web import json_response
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


@router.get("/events")
def list_events(
    db: DbSession,
    principal: AuditorPrincipal,
    filters: FilterParams,
    before: int | None = Query(default=None, ge=1, le=SEQ_MAX),
    limit: int = Query(default=50, ge=1, le=200),
):
    flt = search.build_filter(db, **filters.raw)
    events, cursor = search.search(db, _scope(db, principal), flt, before=before, limit=limit)
    return json_response({"items": [search.event_dict(e) for e in events], "next_before": cursor})


@router.get("/events/{seq}")
def get_event(seq: Annotated[int, Path(ge=1, le=SEQ_MAX)], db: DbSession, principal: AuditorPrincipal):
    return json_response(search.event_dict(search.get_event(db, _scope(db, principal), seq)))


@router.get("/activity")
def user_activity(
    db: DbSession,
    principal: AuditorPrincipal,
    user: str = Query(max_length=64),
    day: str = Query(max_length=10),
    after: int | None = Query(default=None, ge=0, le=SEQ_MAX),
    limit: int = Query(default=200, ge=1, le=200),
):
    """What one user did on one day (UTC), oldest first."""
    start, end = search.day_range(day)
    flt = search.build_filter(db, user=user)
    flt = search.EventFilter(user_id=flt.user_id, since=start, until=end)
    events, cursor = search.search(db, _scope(db, principal), flt, before=after, limit=limit, ascending=True)
    return json_response(
        {"user": user, "day": day, "items": [search.event_dict(e) for e in events], "next_after": cursor}
    )


@router.get("/timeline/{target_id}")
def timeline(
    target_id: str,
    db: DbSession,
    principal: AuditorPrincipal,
    after: int | None = Query(default=None, ge=0, le=SEQ_MAX),
    limit: int = Query(default=200, ge=1, le=200),
):
    """Every event about one target (a transfer, file, user...), oldest first."""
    flt = dataclasses.replace(search.build_filter(db, target_id=target_id), target_or_file=True)
    events, cursor = search.search(db, _scope(db, principal), flt, before=after, limit=limit, ascending=True)
    return json_response(
        {"target_id": target_id, "items": [search.event_dict(e) for e in events], "next_after": cursor}
    )


@router.get("/status")
def status(db: DbSession, components: AppComponents, principal: AuditorPrincipal):
    return log_status(db, components)


@router.get("/public-key")
def public_key(components: AppComponents, principal: AuditorPrincipal):
    signer = get_signer(components)
    name = origin(components.settings)
    return {
        "key_name": name,
        "fingerprint": signer.fingerprint(),
        "public_key_pem": signer.public_key_pem().decode(),
        "verifier_key": verifier_key(name, signer.public_key_raw()),
    }


@router.get("/checkpoints")
def list_checkpoints(db: DbSession, principal: AuditorPrincipal, limit: int = Query(default=50, ge=1, le=200)):
    cps = recent_checkpoints(db, limit)
    return {
        "items": [
            {
                "id": c.id,
                "tree_size": c.tree_size,
                "root_hash": c.root_hash.hex(),
                "kind": c.kind.value,
                "created_at": c.created_at.isoformat(),
                "note": c.note,
            }
            for c in cps
        ]
    }


@router.get("/checkpoints/latest", response_class=PlainTextResponse)
def latest(db: DbSession, principal: AuditorPrincipal):
    """The latest signed checkpoint as a C2SP signed note (text/plain)."""
    cp = latest_checkpoint(db)
    if cp is None:
        raise NotFound("No checkpoint has been signed yet.", code="checkpoint_not_found")
    return PlainTextResponse(cp.note)


@router.post("/checkpoints", status_code=201)
def sign_checkpoint(components: AppComponents, principal: AuditorPrincipal):
    """Sign a checkpoint now (if the log grew since the last one)."""
    maybe_checkpoint(components, force=True)
    with components.db.sessions() as db:
        cp = latest_checkpoint(db)
        if cp is None:
            raise NotFound("The log is empty.", code="checkpoint_not_found")
        return {"id": cp.id, "tree_size": cp.tree_size, "root_hash": cp.root_hash.hex(), "note": cp.note}


@router.get("/proofs/inclusion")
def inclusion(
    db: DbSession,
    principal: AuditorPrincipal,
    seq: int = Query(ge=1, le=SEQ_MAX),
    tree_size: int | None = Query(default=None, ge=1, le=SEQ_MAX),
):
    return proofs.inclusion_proof(db, _scope(db, principal), seq, tree_size)


@router.get("/proofs/consistency")
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


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_csv(db: DbSession, components: AppComponents, principal: AuditorPrincipal, filters: FilterParams):
    return _export("csv", db, components, principal, filters)


@router.get(
    "/export.jsonl",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
def export_jsonl(db: DbSession, components: AppComponents, principal: AuditorPrincipal, filters: FilterParams):
    return _export("jsonl", db, components, principal, filters)


@router.get("/access-review")
def access_review_vendors(db: DbSession, principal: AuditorPrincipal):
    return {
        "vendors": [
            {"id": v.id, "name": v.name, "active": v.active} for v in review.vendors_in_scope(db, _scope(db, principal))
        ]
    }


@router.get("/access-review/{vendor_id}")
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


@router.get("/alerts")
def list_alerts(
    db: DbSession, principal: AuditorPrincipal, open_only: bool = False, limit: int = Query(default=50, ge=1, le=200)
):
    items = alert_service.visible_alerts(db, _scope(db, principal), limit, open_only)
    return {
        "items": [
            {
                **alert_service.alert_payload(a),
                "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
                "delivered_at": a.delivered_at.isoformat() if a.delivered_at else None,
            }
            for a in items
        ]
    }


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(alert_id: Annotated[int, Path(ge=1, le=ALERT_ID_MAX)], db: DbSession, principal: AuditorPrincipal):
    acknowledged_at = alert_service.acknowledge(db, _scope(db, principal), alert_id, principal)
    db.commit()
    return {"id": alert_id, "acknowledged_at": acknowledged_at.isoformat()}
