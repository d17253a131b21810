"""Auditor pages: dashboard (status, alerts), event search, user activity on a day, target timeline, access review."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from gateway.audit.actions import Action
from gateway.audit.checkpoint import maybe_checkpoint
from gateway.audit.service import record_event
from gateway.audit.verify import log_status
from gateway.auditor import alerts as alert_service
from gateway.auditor import review, search
from gateway.auditor.auth import AuditorPrincipal
from gateway.auditor.names import Names
from gateway.auditor.routes import FilterParams, Id
from gateway.auditor.search import Scope
from gateway.deps import AppComponents, DbSession, WriteSession
from gateway.errors import GatewayError
from gateway.paging import MAX_LIMIT
from gateway.web import Cursor, page_links, redirect, render

router = APIRouter(prefix="/audit", include_in_schema=False)


def _page(request, name, principal, status_code=200, **context):
    return render(request, name, status_code=status_code, principal=principal, **context)


@router.get("")
def dashboard(request: Request, db: DbSession, components: AppComponents, principal: AuditorPrincipal):
    scope = Scope.of(db, principal)
    from gateway.transfers.service import unreviewed_emergencies

    emergencies = unreviewed_emergencies(db, principal)
    return _page(
        request,
        "audit_dashboard.html",
        principal,
        status=log_status(db, components),
        alerts=alert_service.visible_alerts(db, scope, 20).items,
        operator=scope.org_id is None,
        emergencies=emergencies,
        names=Names.of(db, users=[t.decided_by for t in emergencies], transfers=[t.id for t in emergencies]),
    )


@router.post("/checkpoint")
def checkpoint_now(components: AppComponents, principal: AuditorPrincipal):
    maybe_checkpoint(components, force=True)
    return redirect("/audit")


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(alert_id: int, db: DbSession, principal: AuditorPrincipal):
    alert_service.acknowledge(db, Scope.of(db, principal), alert_id, principal)
    db.commit()
    return redirect("/audit")


@router.get("/events")
def events(
    request: Request,
    db: DbSession,
    principal: AuditorPrincipal,
    filters: FilterParams,
    cursor: Cursor = None,
):
    values = {k: v for k, v in filters.raw.items() if v}
    scope = Scope.of(db, principal)
    orgs = search.orgs_in_scope(db, scope)
    try:
        flt = search.build_filter(db, **filters.raw)
    except GatewayError as exc:
        return _page(
            request,
            "audit_events.html",
            principal,
            status_code=exc.status,
            error=exc.message,
            values=values,
            orgs=orgs,
            items=[],
            names=Names({}),
            links=None,
            export_query="",
        )
    page = search.search(db, scope, flt, cursor=cursor)
    return _page(
        request,
        "audit_events.html",
        principal,
        values=values,
        orgs=orgs,
        items=page.items,
        names=Names.of(db, page.items),
        links=page_links(request, page.next_cursor),
        export_query=urlencode(values),
    )


@router.get("/activity")
def activity(
    request: Request,
    db: DbSession,
    principal: AuditorPrincipal,
    user: Id = None,
    day: str | None = Query(default=None, max_length=10),
    cursor: Cursor = None,
):
    values = {"user": user or "", "day": day or ""}
    if not user or not day:
        return _page(request, "audit_activity.html", principal, values=values, items=None, who=None)
    try:
        start, end = search.day_range(day)
        flt = search.build_filter(db, user=user)
    except GatewayError as exc:
        return _page(
            request,
            "audit_activity.html",
            principal,
            status_code=exc.status,
            error=exc.message,
            values=values,
            items=None,
            who=None,
        )
    flt = search.EventFilter(user_id=flt.user_id, since=start, until=end)
    scope = Scope.of(db, principal)
    page = search.search(db, scope, flt, cursor=cursor, limit=MAX_LIMIT, ascending=True)
    export_query = urlencode({"user": user, "since": day, "until": day})
    # The user's name and the count of their events left out are shown only for a user of an organisation in the
    # caller's scope: for anyone else they would tell a practice about another organisation's people.
    in_view = search.user_in_scope(db, scope, flt.user_id)
    names = Names.of(db, page.items, users=[flt.user_id] if in_view else [], orgs=[scope.org_id])
    return _page(
        request,
        "audit_activity.html",
        principal,
        values=values,
        items=page.items,
        names=names,
        who=names.user(flt.user_id) if in_view else None,
        scope_org=names.org(scope.org_id),
        hidden=search.outside_scope(db, scope, flt) if in_view else None,
        links=page_links(request, page.next_cursor),
        export_query=export_query,
    )


@router.get("/timeline")
def timeline(request: Request, db: DbSession, principal: AuditorPrincipal, target_id: Id = None, cursor: Cursor = None):
    if not target_id:
        return _page(request, "audit_timeline.html", principal, target_id="", items=None)
    try:
        flt = dataclasses.replace(search.build_filter(db, target_id=target_id), target_or_file=True)
    except GatewayError as exc:
        return _page(
            request,
            "audit_timeline.html",
            principal,
            status_code=exc.status,
            error=exc.message,
            target_id="",
            items=None,
        )
    scope = Scope.of(db, principal)
    page = search.search(db, scope, flt, cursor=cursor, limit=MAX_LIMIT, ascending=True)
    # File events name the transfer as target and the file ids in details: show those too.
    return _page(
        request,
        "audit_timeline.html",
        principal,
        target_id=target_id,
        items=page.items,
        names=Names.of(db, page.items),
        links=page_links(request, page.next_cursor),
        export_query=urlencode({"target_id": target_id}),
    )


@router.get("/access-review")
def access_review(request: Request, db: WriteSession, principal: AuditorPrincipal, vendor_id: Id = None):
    scope = Scope.of(db, principal)
    vendors = review.vendors_in_scope(db, scope)  # a form's choice offers them all
    vendor, rows = None, None
    if vendor_id:
        vendor, rows = review.access_review(db, scope, vendor_id)
        record_event(
            db,
            Action.AUDIT_ACCESS_REVIEW_VIEWED,
            actor=principal.actor,
            target_type="organisation",
            target_id=vendor.id,
            target_org_id=vendor.id,
        )
        db.commit()
    return _page(
        request,
        "audit_review.html",
        principal,
        vendors=vendors,
        vendor=vendor,
        rows=rows,
        names=Names.of(db, users=[r.created_by for r in rows or []]),
    )
